"""The Config's flags are made from its fields: names, types, defaults and bounds agree."""

from __future__ import annotations

import dataclasses

from absl import flags
import pytest

import conftest  # pylint: disable=unused-import
from attn_jax import config as config_lib
from experiments import config_flags

FLAGS = flags.FLAGS

FIELDS = [(f"{name}.{field.name}", cls, field)
          for name, cls in config_flags.SECTIONS.items() for field in dataclasses.fields(cls)]
EXPOSED = [(dotted, cls, field) for dotted, cls, field in FIELDS
           if dotted not in config_flags.UNEXPOSED]
BOUNDED = [(dotted, cls, field) for dotted, cls, field in EXPOSED
           if config_lib.has_bounds(field)]

# The parser of each field type's flag (an enum's: EnumParser).
PARSERS = {"int": flags.IntegerParser, "int | None": flags.IntegerParser,
           "float": flags.FloatParser, "bool": flags.BooleanParser, "str": flags.ArgumentParser}


def _ids(cases):
  return [dotted for dotted, _, _ in cases]


@pytest.mark.parametrize("dotted, cls, field", EXPOSED, ids=_ids(EXPOSED))
def test_every_exposed_field_has_a_flag_of_its_type_default_and_help(dotted, cls, field):
  flag = FLAGS[config_flags.flag_name(dotted)]
  expected = flags.EnumParser if dotted in config_flags.CHOICES else PARSERS[field.type]
  assert type(flag.parser) is expected  # pylint: disable=unidiomatic-typecheck
  assert flag.default == field.default == getattr(cls(), field.name)
  assert flag.help.endswith(field.metadata["help"])  # an enum's help starts <choice|...>:


def test_the_unexposed_fields_have_no_flag_and_are_filled_in():
  assert config_flags.UNEXPOSED == {"model.src_vocab_size", "model.tgt_vocab_size"}
  for dotted in config_flags.UNEXPOSED:
    assert dotted.split(".")[1] not in FLAGS
  assert set(config_flags.FLAG_NAMES) <= {dotted for dotted, _, _ in EXPOSED}


def test_the_config_flags_are_the_fields_and_keep_freed_pages():
  defined = {f.name for f in FLAGS.get_flags_for_module(config_flags)}
  assert defined == {config_flags.flag_name(d) for d, _, _ in EXPOSED} | {"keep_freed_pages"}


# What some choices need besides (dot attention: encoder states of the decoder's size).
_VALID_WITH = {("task", "translation"): {"data_dir": "/data"},
               **{("attention", a): {"bidirectional": False}
                  for a in config_flags.CHOICES["model.attention"]}}


def test_enum_choices_are_the_ones_the_dataclass_accepts():
  for dotted, choices in config_flags.CHOICES.items():
    section, name = dotted.split(".")
    cls = config_flags.SECTIONS[section]
    for choice in choices:
      cls(**{name: choice, **_VALID_WITH.get((name, choice), {})})
    with pytest.raises(config_lib.ConfigError, match=f"^{name}: must be one of"):
      cls(**{name: "no_such_choice"})


def _outside(field: dataclasses.Field) -> list[tuple[object, object]]:
  """(value the flag parser rejects, value the dataclass rejects) for each of its bounds.

  A strict float bound is inclusive for the flag (absl cannot say otherwise): the flag
  rejects a value beyond it, the dataclass the bound itself.
  """
  meta, is_int = field.metadata, field.type in ("int", "int | None")
  step = 1 if is_int else 0.5
  cases = []
  if meta.get("lower") is not None:
    cases.append((meta["lower"] - step, meta["lower"] - step))
  if meta.get("upper") is not None:
    cases.append((meta["upper"] + step, meta["upper"] + step))
  if meta.get("above") is not None:
    cases.append((meta["above"] if is_int else meta["above"] - step, meta["above"]))
  if meta.get("below") is not None:
    cases.append((meta["below"] if is_int else meta["below"] + step, meta["below"]))
  return cases


@pytest.mark.parametrize("dotted, cls, field", BOUNDED, ids=_ids(BOUNDED))
def test_a_bound_is_enforced_by_the_flag_and_by_the_dataclass(dotted, cls, field):
  parser = FLAGS[config_flags.flag_name(dotted)].parser
  name = field.name
  assert _outside(field)
  for flag_value, field_value in _outside(field):
    with pytest.raises(ValueError):
      parser.parse(str(flag_value))
    with pytest.raises(config_lib.ConfigError, match=f"^{name}: must be "):
      cls(**{name: field_value})
  # The flag's own bounds are values the flag accepts.
  for bound in (parser.lower_bound, parser.upper_bound):
    if bound is not None:
      assert parser.parse(str(bound)) == bound


def test_build_config_reads_the_flags():
  """Fields given values other than their defaults by flag reach the Config."""
  changed = {"hidden_size": 16, "encoder_size": 8, "data_seed": 5, "seed": 7,
             "learning_rate": 0.01, "cell": "lstm", "bidirectional": False,
             "shuffle_seed": 3, "init_checkpoint": "latest"}
  saved = {name: FLAGS[name].value for name in changed}
  was_parsed = FLAGS.is_parsed()
  FLAGS.mark_as_parsed()
  try:
    for name, value in changed.items():
      FLAGS[name].value = value
    config = config_flags.build_config()
  finally:
    for name, value in saved.items():
      FLAGS[name].value = value
    if not was_parsed:
      FLAGS.unparse_flags()
  assert config.model.hidden_size == 16 and config.model.encoder_size == 8
  assert config.data.seed == 5 and config.train.seed == 7 and config.data.shuffle_seed == 3
  assert config.model.cell == "lstm" and not config.model.bidirectional
  assert config.train.learning_rate == 0.01 and config.train.init_checkpoint == "latest"
  assert config.model.src_vocab_size == config.model.tgt_vocab_size == config.data.vocab_size
