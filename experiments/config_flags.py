"""The flags that build a Config, shared by the programs that train or time a model.

Importing this module defines them; `build_config` turns the parsed values into
the frozen Config (ConfigError names the bad option).
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from attn_jax import config as config_lib
from attn_jax.model import attention, cells, precision

FLAGS = flags.FLAGS

SECTIONS = {"model": config_lib.ModelConfig, "data": config_lib.DataConfig,
            "train": config_lib.TrainConfig}
# Config field -> flag name, where they differ.
FLAG_NAMES = {"data.seed": "data_seed"}
# ConfigError names a field without its section: the flag to name instead.
ERROR_FLAG_NAMES = {field.split(".")[1]: flag for field, flag in FLAG_NAMES.items()}
# Config fields without a flag: both are --vocab_size (model_config).
UNEXPOSED = frozenset({"model.src_vocab_size", "model.tgt_vocab_size"})
# String fields whose flag is an enum of these names.
CHOICES = {
    "model.cell": list(cells.CELLS),
    "model.attention": list(attention.VARIANTS),
    "model.query": list(config_lib.QUERIES),
    "model.matmul_dtype": list(precision.MATMUL_DTYPES),
    "data.task": list(config_lib.TASKS),
}


def flag_name(dotted: str) -> str:
  """The flag of config field 'section.name'."""
  return FLAG_NAMES.get(dotted, dotted.split(".")[1])


def _flag_bounds(field: dataclasses.Field) -> dict[str, object]:
  """lower_bound/upper_bound of the field's flag, from the bounds in its metadata.

  A strict bound becomes an inclusive one: the next integer, or for a float the bound
  itself (the dataclass then rejects the bound itself).
  """
  meta, step = field.metadata, 1 if field.type in ("int", "int | None") else 0
  bounds = {}
  if meta.get("lower") is not None or meta.get("above") is not None:
    bounds["lower_bound"] = (meta["lower"] if meta.get("lower") is not None
                             else meta["above"] + step)
  if meta.get("upper") is not None or meta.get("below") is not None:
    bounds["upper_bound"] = (meta["upper"] if meta.get("upper") is not None
                             else meta["below"] - step)
  return bounds


def _define_flag(dotted: str, field: dataclasses.Field) -> None:
  """Defines the flag of config field `field` ('section.name': `dotted`)."""
  name, help_text = flag_name(dotted), field.metadata["help"]
  if dotted in CHOICES:
    flags.DEFINE_enum(name, field.default, CHOICES[dotted], help_text)
  elif field.type == "bool":
    flags.DEFINE_boolean(name, field.default, help_text)
  elif field.type == "str":
    flags.DEFINE_string(name, field.default, help_text)
  elif field.type in ("int", "int | None"):
    flags.DEFINE_integer(name, field.default, help_text, **_flag_bounds(field))
  elif field.type == "float":
    flags.DEFINE_float(name, field.default, help_text, **_flag_bounds(field))
  else:
    raise TypeError(f"config field {dotted}: no flag for type {field.type}")


def _define_config_flags() -> None:
  """Defines a flag for every config field but the UNEXPOSED ones."""
  for section_name, cls in SECTIONS.items():
    for field in dataclasses.fields(cls):
      dotted = f"{section_name}.{field.name}"
      if dotted not in UNEXPOSED:
        _define_flag(dotted, field)


_define_config_flags()

# Process (not part of the Config).
flags.DEFINE_boolean(
    "keep_freed_pages", True,
    "glibc: allocate from one heap and keep freed memory mapped, so each training step "
    "reuses the pages of the last instead of faulting in fresh ones (on the matched model "
    "about 16 % faster on CPU, compilation slower, and the resident set keeps its "
    "high-water mark).")


def section(cls, name: str, **extra):
  """The config dataclass `cls` (section `name`) from the parsed flags; `extra` fields given."""
  names = {f.name for f in dataclasses.fields(cls)} - set(extra)
  values = {n: getattr(FLAGS, flag_name(f"{name}.{n}")) for n in names}
  return cls(**values, **extra)


def model_config() -> config_lib.ModelConfig:
  return section(config_lib.ModelConfig, "model", src_vocab_size=FLAGS.vocab_size,
                 tgt_vocab_size=FLAGS.vocab_size)


def build_config() -> config_lib.Config:
  """The frozen Config from the parsed flags; ConfigError names the bad option."""
  data = section(config_lib.DataConfig, "data")
  return config_lib.Config(model=model_config(), data=data,
                           train=section(config_lib.TrainConfig, "train"))


def flagfile_text(*extra: str) -> str:
  """These flags and the `extra` ones, as a flagfile that re-runs the experiment."""
  defined = FLAGS.get_flags_for_module(sys.modules[__name__]) + [FLAGS[n] for n in extra]
  return "".join(f.serialize() + "\n" for f in sorted(defined, key=lambda f: f.name))
