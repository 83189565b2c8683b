"""Config validation: every bad option raises ConfigError naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from attn_jax import config as config_lib
from attn_jax.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig

MODEL_BAD = [
    ("cell", "rnn"), ("query", "next"), ("attention", "multihead"), ("embed_size", 0),
    ("hidden_size", 0), ("hidden_size", -3), ("encoder_layers", 0), ("attention_size", 0),
    ("src_vocab_size", 3), ("tgt_vocab_size", 2), ("dropout", 1.0), ("dropout", -0.1),
    ("matmul_dtype", "float16"),
]
DATA_BAD = [
    ("task", "translate"), ("vocab_size", 3), ("min_len", 0), ("max_len", 0),
    ("train_size", 0), ("eval_size", 0), ("subword_dropout", 1.0), ("subword_dropout", -0.1),
    ("subword_dropout", 0.1),  # the default task is synthetic: no subwords to drop
    ("distilled_targets", "teacher.de"),  # nor a training split to distil
]
TRAIN_BAD = [
    ("num_steps", 0), ("batch_size", 0), ("learning_rate", 0.0), ("log_every", 0),
    ("eval_every", 0), ("checkpoint_every", 0), ("keep_checkpoints", 0), ("warmup_steps", -1),
    ("clip_norm", -1.0), ("num_plots", -1), ("label_smoothing", 1.0), ("label_smoothing", -0.5),
    ("plateau_patience", -1), ("plateau_factor", 0.0), ("plateau_factor", 1.0),
]


def test_defaults_are_valid():
  c = Config()
  assert c.model.encoder_output_size == 2 * c.model.hidden_size
  assert ModelConfig(bidirectional=False, hidden_size=7).encoder_output_size == 7


@pytest.mark.parametrize("cls,field,value",
                         [(ModelConfig, f, v) for f, v in MODEL_BAD]
                         + [(DataConfig, f, v) for f, v in DATA_BAD]
                         + [(TrainConfig, f, v) for f, v in TRAIN_BAD])
def test_bad_value_names_the_field(cls, field, value):
  with pytest.raises(ConfigError) as info:
    cls(**{field: value})
  assert str(info.value).startswith(f"{field}: ")
  assert isinstance(info.value, ValueError)


def test_min_len_above_max_len():
  with pytest.raises(ConfigError, match=r"^min_len: .*max_len"):
    DataConfig(min_len=5, max_len=3)


def test_plateau_decay_is_for_one_run():
  with pytest.raises(ConfigError, match=r"^plateau_patience: .*num_seeds=2"):
    TrainConfig(plateau_patience=2, num_seeds=2)


def test_zero_warmup_and_clip_are_allowed():
  TrainConfig(warmup_steps=0, clip_norm=0.0, num_plots=0, label_smoothing=0.0)


@pytest.mark.parametrize("field", ["src_vocab_size", "tgt_vocab_size"])
def test_model_vocab_must_match_the_task(field):
  model = dataclasses.replace(ModelConfig(src_vocab_size=12, tgt_vocab_size=12), **{field: 13})
  with pytest.raises(ConfigError, match=f"^{field}: "):
    Config(model=model, data=DataConfig(vocab_size=12))


def test_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    Config().model.hidden_size = 3  # type: ignore[misc]


def test_dict_and_json_round_trip():
  import json  # pylint: disable=g-import-not-at-top
  c = Config(model=ModelConfig(cell="lstm", attention="general", query="previous",
                               encoder_size=32),
             data=DataConfig(task="sort"), train=TrainConfig(num_steps=7))
  assert Config.from_dict(c.to_dict()) == c
  assert Config.from_dict(json.loads(c.to_json())) == c


def test_differing_and_incompatible_fields():
  a = Config()
  b = Config(model=dataclasses.replace(a.model, hidden_size=16),
             train=dataclasses.replace(a.train, num_steps=10, log_every=5, learning_rate=1e-2))
  assert config_lib.differing_fields(a, b) == [
      "model.hidden_size", "train.learning_rate", "train.log_every", "train.num_steps"]
  assert config_lib.incompatible_fields(a, b) == ["model.hidden_size", "train.learning_rate"]
  assert config_lib.incompatible_fields(a, a) == []
  for name in config_lib.RESUMABLE_CHANGES:
    section, field = name.split(".")
    assert hasattr(getattr(a, section), field)


def test_a_saved_config_from_other_code_compares_as_a_dict():
  """A field the saved config lacks reads as its default (the behaviour before the field
  existed); a field the code no longer has counts as differing; neither crashes."""
  current = config_lib.Config()
  saved = current.to_dict()
  del saved["train"]["cooldown_steps"]
  del saved["model"]["window"]
  saved["model"]["obsolete_option"] = 3
  assert config_lib.incompatible_fields(saved, current) == ["model.obsolete_option"]
  assert config_lib.field_value(saved, "train.cooldown_steps") == current.train.cooldown_steps
  longer = dataclasses.replace(current, train=dataclasses.replace(current.train,
                                                                  cooldown_steps=999))
  assert config_lib.incompatible_fields(saved, longer) == [
      "model.obsolete_option", "train.cooldown_steps"]


def test_dot_attention_needs_encoder_states_of_the_decoder_size():
  with pytest.raises(ConfigError, match=r"^attention: dot scores q \. k without parameters, so "
                     r"an encoder state \(256 = 2 x 128 per direction\) must have the decoder's "
                     r"hidden_size \(128\): set encoder_size to 64, or use general attention$"):
    ModelConfig(attention="dot", hidden_size=128)
  m = ModelConfig(attention="dot", hidden_size=128, encoder_size=64)
  assert m.encoder_hidden_size == 64 and m.encoder_output_size == 128
  assert ModelConfig(attention="local_p_scaled_dot", bidirectional=False).encoder_output_size == 128
  assert ModelConfig(encoder_size=32).encoder_output_size == 64  # general, additive: any size


def test_every_field_has_help():
  for cls in (ModelConfig, DataConfig, TrainConfig):
    for field in dataclasses.fields(cls):
      assert field.metadata.get("help"), f"{cls.__name__}.{field.name}"


def test_bounds_read_as_words():
  cases = [(ModelConfig, "hidden_size", 0, "must be positive, got 0"),
           (ModelConfig, "encoder_size", -1, "must be >= 0, got -1"),
           (ModelConfig, "dropout", 1.0, r"must be in \[0, 0.99\], got 1.0"),
           (DataConfig, "vocab_size", 3, "must be > 3, got 3"),
           (TrainConfig, "plateau_factor", 1.0, r"must be in \(0, 1\), got 1.0")]
  for cls, name, value, message in cases:
    with pytest.raises(ConfigError, match=f"^{name}: {message}$"):
      cls(**{name: value})


def test_num_heads_must_divide_the_attention_and_encoder_sizes():
  ModelConfig(attention="multihead_additive", num_heads=4, attention_size=128)
  ModelConfig(attention="additive", num_heads=3)  # other variants ignore it
  with pytest.raises(ConfigError, match=r"^num_heads: 3 must divide attention_size \(128\)"):
    ModelConfig(attention="multihead_scaled_dot", num_heads=3)


def test_coverage_loss_weight_needs_weights_that_sum_to_one():
  Config(model=ModelConfig(attention="coverage_additive"),
         train=TrainConfig(coverage_loss_weight=1.0))
  Config(model=ModelConfig(attention="sparsemax_additive"),
         train=TrainConfig(coverage_loss_weight=1.0))
  for attention in ("monotonic", "none", "local_p_general"):
    with pytest.raises(ConfigError, match=rf"^coverage_loss_weight: .*{attention} attention"):
      Config(model=ModelConfig(attention=attention), train=TrainConfig(coverage_loss_weight=1.0))
  with pytest.raises(ConfigError, match=r"^coverage_loss_weight: "):
    TrainConfig(coverage_loss_weight=-0.5)
