"""Frozen configuration: model, data and training options, with validation.

One `Config` describes an experiment. It is built once by an entry point in
`experiments/` (from flags) and passed down unchanged; jitted functions receive
the parts they need as static arguments, never through globals.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from attn_jax.model import attention, cells, output_loss, precision

QUERIES = ("previous", "current")
SYNTHETIC_TASKS = ("copy", "reverse", "sort")
TASKS = SYNTHETIC_TASKS + ("translation",)

# Special token ids shared by every vocabulary.
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
NUM_SPECIAL = 3


class ConfigError(ValueError):
  """An invalid option; the message names the option."""


def _check(ok: bool, name: str, message: str) -> None:
  if not ok:
    raise ConfigError(f"{name}: {message}")


def is_checkpoint_choice(which: str) -> bool:
  """Whether `which` names a saved checkpoint: best, latest or a step number."""
  return which in ("best", "latest") or which.isdigit()


def _positive(obj: Any, *names: str) -> None:
  for name in names:
    value = getattr(obj, name)
    _check(value > 0, name, f"must be positive, got {value}")


def _non_negative(obj: Any, *names: str) -> None:
  for name in names:
    value = getattr(obj, name)
    _check(value >= 0, name, f"must be >= 0, got {value}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture options; every field changes the parameter tree or the graph."""

  src_vocab_size: int = 20
  tgt_vocab_size: int = 20
  cell: str = "gru"
  embed_size: int = 64
  hidden_size: int = 128  # the decoder's state; the encoder's too unless encoder_size is set
  encoder_size: int = 0  # hidden units of each encoder direction; 0: hidden_size
  encoder_layers: int = 1
  bidirectional: bool = True
  attention: str = "additive"
  attention_size: int = 128  # additive attention's inner size
  query: str = "current"
  input_feeding: bool = True
  dropout: float = 0.0
  tie_embeddings: bool = False  # output layer W_o = target embedding E (Press & Wolf 2017)
  layer_norm: bool = False  # layer-normalised GRU/LSTM projections (Ba et al. 2016)
  window: int = 10  # local attention's half-width D (Luong et al. 2015 use 10)
  location_positions: int = 128  # source positions location attention scores; later ones get 0
  matmul_dtype: str = "float32"  # operands of the kernels' products (precision.matmul): "bfloat16"

  def __post_init__(self):
    _check(self.cell in cells.CELLS, "cell",
           f"must be one of {tuple(cells.CELLS)}, got {self.cell!r}")
    _check(self.query in QUERIES, "query",
           f"must be one of {QUERIES}, got {self.query!r}")
    _check(self.attention in attention.VARIANTS, "attention",
           f"must be one of {tuple(attention.VARIANTS)}, got {self.attention!r}")
    _check(self.matmul_dtype in precision.MATMUL_DTYPES, "matmul_dtype",
           f"must be one of {precision.MATMUL_DTYPES}, got {self.matmul_dtype!r}")
    _positive(self, "embed_size", "hidden_size", "encoder_layers", "attention_size", "window",
              "location_positions")
    _check(self.src_vocab_size > NUM_SPECIAL, "src_vocab_size",
           f"must exceed {NUM_SPECIAL} (the special tokens), got {self.src_vocab_size}")
    _non_negative(self, "encoder_size")
    _check(not attention.VARIANTS[self.attention].needs_equal_sizes
           or self.encoder_output_size == self.hidden_size, "attention",
           f"{self.attention} scores q . k without parameters, so an encoder state "
           f"({self.encoder_output_size} = {'2 x ' if self.bidirectional else ''}"
           f"{self.encoder_hidden_size} per direction) must have the decoder's hidden_size "
           f"({self.hidden_size}): set encoder_size to "
           f"{self.hidden_size // (2 if self.bidirectional else 1)}, or use general attention")
    _check(self.tgt_vocab_size > NUM_SPECIAL, "tgt_vocab_size",
           f"must exceed {NUM_SPECIAL} (the special tokens), got {self.tgt_vocab_size}")
    _check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
    _check(not self.tie_embeddings or self.embed_size == self.hidden_size, "tie_embeddings",
           f"needs embed_size == hidden_size, got {self.embed_size} and {self.hidden_size}")

  @property
  def encoder_hidden_size(self) -> int:
    """Hidden units of each encoder direction."""
    return self.encoder_size or self.hidden_size

  @property
  def encoder_output_size(self) -> int:
    """Size of one encoder state (the attention's keys and values)."""
    return self.encoder_hidden_size * (2 if self.bidirectional else 1)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The task and its data.

  Synthetic tasks use min_len/max_len (symbols), train_size and eval_size. The
  translation task reads `<split>.<lang>[.gz]` from data_dir, trains SentencePiece
  on its training split (vocab_size pieces, one joint vocabulary or one per
  language), and drops training pairs longer than max_len subwords.
  """

  task: str = "reverse"
  vocab_size: int = 20  # including the special tokens PAD, BOS, EOS
  min_len: int = 1
  max_len: int = 30
  train_size: int = 50_000
  eval_size: int = 1_000
  seed: int = 0  # synthetic data and the training order
  # Reshuffles the training pairs (None: no): synthetic tasks take their order from it
  # instead of `seed`; translation reshuffles the rows within each length bucket but keeps
  # the sequence of bucket widths that `seed` gives, so runs differing only here have
  # batches of the same shape at every step (and can train as one program, seeds.py).
  shuffle_seed: int | None = None
  data_dir: str = ""
  src_lang: str = "en"
  tgt_lang: str = "de"
  joint_vocab: bool = True
  # Translation: BPE-dropout of the training pairs (Provilkov et al. 2020), every epoch's
  # sentences segmented afresh with each merge skipped at this rate (translation.Resegmented);
  # 0: the one fixed segmentation. Validation and test text are always segmented as usual.
  subword_dropout: float = 0.0
  # Translation: sequence-level knowledge distillation (Kim & Rush 2016). A file of a
  # teacher's translations of the training split's source lines, line for line (as
  # experiments.translate writes them from train.<src_lang>); each (source, translation)
  # pair joins the training pairs. The vocabulary is still trained on the training split.
  distilled_targets: str = ""

  def __post_init__(self):
    _check(self.task in TASKS, "task", f"must be one of {TASKS}, got {self.task!r}")
    if self.task == "translation":
      _check(bool(self.data_dir), "data_dir", "is required for task 'translation'")
      _check(self.src_lang != self.tgt_lang, "tgt_lang",
             f"must differ from src_lang, got {self.tgt_lang!r} for both")
    _check(self.vocab_size > NUM_SPECIAL, "vocab_size",
           f"must exceed {NUM_SPECIAL} (the special tokens), got {self.vocab_size}")
    _positive(self, "min_len", "max_len", "train_size", "eval_size")
    _check(0.0 <= self.subword_dropout < 1.0, "subword_dropout",
           f"must be in [0, 1), got {self.subword_dropout}")
    _check(self.subword_dropout == 0.0 or self.task == "translation", "subword_dropout",
           f"applies to task 'translation' only, not {self.task!r}")
    _check(not self.distilled_targets or self.task == "translation", "distilled_targets",
           f"applies to task 'translation' only, not {self.task!r}")
    _check(self.min_len <= self.max_len, "min_len",
           f"must be <= max_len ({self.max_len}), got {self.min_len}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping options."""

  num_steps: int = 1_200
  batch_size: int = 64
  learning_rate: float = 3e-3
  warmup_steps: int = 200
  cooldown_steps: int = 300
  clip_norm: float = 1.0
  label_smoothing: float = 0.0
  seed: int = 0
  log_every: int = 100
  eval_every: int = 400
  checkpoint_every: int = 400
  keep_checkpoints: int = 2
  num_plots: int = 3  # eval examples drawn as attention heatmaps
  bleu_every: int = 0  # translation: steps between validation BLEU evaluations; 0: at each eval
  patience: int = 0  # stop after this many BLEU evaluations without a new best; 0: never
  # Learning-rate decay on a plateau (as the LIUM systems train): after this many scored
  # evaluations without a new best, the rate is multiplied by plateau_factor, and again
  # after as many more, on top of the schedule (steps.learning_rate). 0: never.
  plateau_patience: int = 0
  plateau_factor: float = 0.5
  max_nonfinite_steps: int = 10  # stop after this many consecutive skipped (non-finite) updates
  num_seeds: int = 1  # independent runs trained as one program (seeds.py); 1: a plain run
  # Target positions (batch x time) whose logits the loss forms at once (output_loss.py);
  # 0: all. Changes speed and memory, not results (beyond float rounding).
  loss_chunk_rows: int = output_loss.DEFAULT_CHUNK_ROWS
  # Batches at least this wide (source or target positions) recompute the encoder's and
  # decoder's time steps in the backward pass instead of keeping every step's activations
  # (jax.checkpoint): the widest, rarest batches set the step's peak memory. 0: never.
  # Changes speed and memory, not results (beyond float rounding).
  remat_width: int = 0
  # Fine-tuning (fine_tune.py): a training workdir whose parameters at its checkpoint
  # init_checkpoint (best, latest or a step) start this run in place of the initialiser,
  # with a fresh optimizer state at step 0. Read only while the run has no checkpoint of
  # its own. "": the initialiser.
  init_from: str = ""
  init_checkpoint: str = "best"

  def __post_init__(self):
    _positive(self, "num_steps", "batch_size", "learning_rate", "log_every",
              "eval_every", "checkpoint_every", "keep_checkpoints", "max_nonfinite_steps",
              "num_seeds")
    _non_negative(self, "warmup_steps", "cooldown_steps", "clip_norm", "num_plots",
                  "bleu_every", "patience", "plateau_patience", "loss_chunk_rows",
                  "remat_width")
    _check(0.0 < self.plateau_factor < 1.0, "plateau_factor",
           f"must be in (0, 1), got {self.plateau_factor}")
    _check(not self.plateau_patience or self.num_seeds == 1, "plateau_patience",
           f"lowers one run's rate on its own plateau, not those of num_seeds={self.num_seeds} "
           f"stacked runs")
    _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing",
           f"must be in [0, 1), got {self.label_smoothing}")
    _check(is_checkpoint_choice(self.init_checkpoint), "init_checkpoint", f"expected best, latest or a step number, got "
           f"{self.init_checkpoint!r}")
    _check(not self.init_from or self.num_seeds == 1, "init_from",
           f"starts one model, not num_seeds={self.num_seeds} stacked ones")


# Fields that may change when a run is resumed: they alter neither the
# parameters nor the steps already taken (a moved data_dir is checked by the
# vocabulary's hash in the checkpoint; loss_chunk_rows and remat_width change only float
# rounding).
# (num_steps moves the cool-down: a run extended before its cool-down began
# continues exactly as if planned longer.)
RESUMABLE_CHANGES = frozenset({
    "train.num_steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.num_plots",
    "train.bleu_every", "train.patience", "train.max_nonfinite_steps", "data.data_dir",
    "train.loss_chunk_rows", "train.remat_width",
})


# Resumable fields that change no result either: neither the parameters a run ends
# with nor its scores (loss_chunk_rows, remat_width: beyond float rounding).
RESULT_NEUTRAL = frozenset({
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.num_plots",
    "train.loss_chunk_rows", "train.remat_width",
})


@dataclasses.dataclass(frozen=True)
class Config:
  model: ModelConfig = ModelConfig()
  data: DataConfig = DataConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    _check(self.model.src_vocab_size == self.data.vocab_size, "src_vocab_size",
           f"must equal the task's vocab_size ({self.data.vocab_size})")
    _check(self.model.tgt_vocab_size == self.data.vocab_size, "tgt_vocab_size",
           f"must equal the task's vocab_size ({self.data.vocab_size})")

  def to_dict(self) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, dict[str, Any]]) -> "Config":
    return cls(model=ModelConfig(**d["model"]), data=DataConfig(**d["data"]),
               train=TrainConfig(**d["train"]))


ConfigDict = dict[str, dict[str, Any]]  # Config.to_dict(): {"model": {...}, "data": ..., "train": ...}


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _as_dict(config: Config | ConfigDict) -> ConfigDict:
  """The dict form; a dict saved before a field existed reads that field's default."""
  if isinstance(config, Config):
    return config.to_dict()
  return {name: {**{f.name: f.default for f in dataclasses.fields(cls)}, **config.get(name, {})}
          for name, cls in _SECTIONS.items()}


def differing_fields(a: Config | ConfigDict, b: Config | ConfigDict) -> list[str]:
  """Dotted names of the fields whose values differ, e.g. ['model.hidden_size'].

  Accepts the dict form too, so a config saved by another version of the code
  compares without being rebuilt: a field it lacks reads as the field's default (the
  behaviour before the field existed), a field the code no longer has as itself.
  """
  da, db = _as_dict(a), _as_dict(b)
  names = {(s, k) for d in (da, db) for s in d for k in d[s]}
  return sorted(f"{s}.{k}" for s, k in names
                if da.get(s, {}).get(k) != db.get(s, {}).get(k))


def field_value(config: Config | ConfigDict, dotted: str) -> Any:
  """The value of 'section.name' in a config, or None if it has no such field."""
  section, name = dotted.split(".")
  return _as_dict(config).get(section, {}).get(name)


def incompatible_fields(saved: Config | ConfigDict, current: Config | ConfigDict) -> list[str]:
  """Differing fields that forbid resuming `saved` with `current`."""
  return [f for f in differing_fields(saved, current) if f not in RESUMABLE_CHANGES]
