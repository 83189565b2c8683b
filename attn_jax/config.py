"""Frozen configuration: model, data and training options, with validation.

One `Config` describes an experiment. It is built once by an entry point in
`experiments/` (from flags) and passed down unchanged; jitted functions receive
the parts they need as static arguments, never through globals.

Each field is declared with `option`: its default, help text and bounds. The flags
of experiments/config_flags.py are made from these fields, and `check_bounds`
enforces the bounds; checks across fields are written out in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

QUERIES = ("previous", "current")
# The names of the model's variants. The registries that implement them (model.cells.CELLS,
# model.attention.VARIANTS, model.precision) check on import that they implement exactly these.
CELLS = ("gru", "lstm")
SCORES = ("dot", "scaled_dot", "general", "additive", "location")  # global attention scores
PARAMETER_FREE_SCORES = ("dot", "scaled_dot")  # q . k: the keys must have the query's size
LOCAL_SCORES = tuple(s for s in SCORES if s != "location")  # what local-m/local-p windows wrap
SPARSE_NORMALISERS = ("sparsemax", "entmax15")  # in place of softmax, over any global score
MULTIHEAD = ("multihead_additive", "multihead_scaled_dot")  # --num_heads heads
RECURRENT = ("coverage_additive", "monotonic", "mocha")  # a state carried from step to step
WRAPPERS = ("local_m", "local_p") + SPARSE_NORMALISERS  # prefixes of <wrapper>_<score> names
ATTENTIONS = (("none",) + SCORES + tuple(f"local_m_{s}" for s in LOCAL_SCORES)
              + tuple(f"local_p_{s}" for s in LOCAL_SCORES)
              + tuple(f"{n}_{s}" for n in SPARSE_NORMALISERS for s in SCORES) + MULTIHEAD
              + RECURRENT)
MATMUL_DTYPES = ("float32", "bfloat16")
LOSS_CHUNK_ROWS = 256  # the loss's default rows of logits at once: 256 x 8,000 logits, 8 MB
DEFAULT_DATA_DIR = os.path.join("data", "multi30k")  # experiments.download writes it
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


def score_of(attention: str) -> str:
  """The global score an attention variant uses: `local_p_general` -> `general`."""
  for wrapper in WRAPPERS:
    if attention.startswith(wrapper + "_"):
      return attention.removeprefix(wrapper + "_")
  return attention


def needs_equal_sizes(attention: str) -> bool:
  """Whether the attention variant scores q . k without parameters (dot, scaled_dot, and the
  variants that wrap them): its keys, the encoder states, need the query's size."""
  return score_of(attention) in PARAMETER_FREE_SCORES


def weights_are_distributions(attention: str) -> bool:
  """Whether every step's weights sum to 1 over the real source positions (what a
  coverage loss compares against): not for no attention, the local windows (local-p's
  Gaussian) or monotonic and chunkwise attention (mass may run past the end)."""
  return not (attention in ("none", "monotonic", "mocha") or attention.startswith("local_"))


def check_registry(kind: str, implemented: tuple[str, ...], names: tuple[str, ...]) -> None:
  """Raises RuntimeError unless a registry implements exactly the names config gives."""
  if tuple(implemented) != tuple(names):
    raise RuntimeError(f"{kind}: the registry implements {tuple(implemented)}, config names "
                       f"{tuple(names)}")


def is_checkpoint_choice(which: str) -> bool:
  """Whether `which` names a saved checkpoint: best, latest or a step number."""
  return which in ("best", "latest") or which.isdigit()


_BOUND_KEYS = ("lower", "upper", "above", "below")


def option(default: Any, help: str, *,  # pylint: disable=redefined-builtin
           lower: Any = None, upper: Any = None, above: Any = None, below: Any = None) -> Any:
  """A config field with its help text and bounds: the one place an option is defined.

  experiments/config_flags.py makes each field's flag from this metadata, and
  `check_bounds` enforces the bounds on every instance.

  Args:
    default: the field's default.
    help: what the option does (the flag's help text).
    lower: the least value allowed.
    upper: the greatest value allowed.
    above: a bound the value must exceed. An integer flag's lower bound is above + 1; a
      float flag's is `above` itself (absl bounds are inclusive), which the dataclass
      alone then rejects.
    below: a bound the value must stay under, as `above`.

  Returns:
    A dataclasses.field whose metadata holds help, lower, upper, above and below.
  """
  return dataclasses.field(default=default, metadata={
      "help": help, "lower": lower, "upper": upper, "above": above, "below": below})


def has_bounds(field: dataclasses.Field) -> bool:
  """Whether the field's metadata bounds its value."""
  return any(field.metadata.get(k) is not None for k in _BOUND_KEYS)


def _in_bounds(value: Any, meta: Mapping[str, Any]) -> bool:
  """Whether `value` satisfies the bounds in a field's metadata."""
  lower, upper, above, below = (meta.get(k) for k in _BOUND_KEYS)
  return ((lower is None or value >= lower) and (upper is None or value <= upper)
          and (above is None or value > above) and (below is None or value < below))


def _bounds_text(meta: Mapping[str, Any]) -> str:
  """The bounds in a field's metadata in words, e.g. 'positive', '>= 0' or 'in [0, 1)'."""
  lower, upper, above, below = (meta.get(k) for k in _BOUND_KEYS)
  low = f"[{lower:g}" if lower is not None else f"({above:g}" if above is not None else ""
  high = f"{upper:g}]" if upper is not None else f"{below:g})" if below is not None else ""
  if low and high:
    return f"in {low}, {high}"
  if above == 0:
    return "positive"
  if low:
    return {"[": ">= ", "(": "> "}[low[0]] + low[1:]
  return {"]": "<= ", ")": "< "}[high[-1]] + high[:-1]


def check_bounds(obj: Any) -> None:
  """Raises ConfigError for the first field of dataclass `obj` outside its bounds."""
  for field in dataclasses.fields(obj):
    value = getattr(obj, field.name)
    if has_bounds(field) and value is not None:
      _check(_in_bounds(value, field.metadata), field.name,
             f"must be {_bounds_text(field.metadata)}, got {value}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture options; every field changes the parameter tree or the graph."""

  # Not flags: both are the task's vocab_size (--vocab_size).
  src_vocab_size: int = option(20, "Source vocabulary size including PAD, BOS, EOS.",
                               above=NUM_SPECIAL)
  tgt_vocab_size: int = option(20, "Target vocabulary size including PAD, BOS, EOS.",
                               above=NUM_SPECIAL)
  cell: str = option("gru", "Recurrent cell.")
  embed_size: int = option(64, "Embedding size.", above=0)
  hidden_size: int = option(128, "Hidden size of the decoder, and of each encoder direction "
                            "unless --encoder_size is set.", above=0)
  encoder_size: int = option(0, "Hidden size of each encoder direction; 0: --hidden_size. (dot "
                             "and scaled_dot attention need encoder states of the decoder's "
                             "size.)", lower=0)
  encoder_layers: int = option(1, "Stacked encoder layers.", above=0)
  bidirectional: bool = option(True, "Bidirectional encoder.")
  attention: str = option("additive", "Attention variant.")
  attention_size: int = option(128, "Inner size of additive attention.", above=0)
  num_heads: int = option(4, "Multi-head attention (multihead_*): heads; divides "
                          "--attention_size and the encoder output size.", above=0)
  query: str = option("current",
                      "Attend with h_{t-1} (previous, Bahdanau) or h_t (current, Luong).")
  input_feeding: bool = option(True, "Feed the last attentional vector/context to the cell.")
  dropout: float = option(0.0, "Dropout rate.", lower=0.0, upper=0.99)
  # Press & Wolf 2017: the output layer's W_o is the target embedding E.
  tie_embeddings: bool = option(
      False, "Output layer shares the target embedding (needs embed_size == hidden_size).")
  # Ba et al. 2016.
  layer_norm: bool = option(False, "Layer-normalise the RNN cells' projections.")
  # Luong et al. 2015 use D = 10.
  window: int = option(10, "Local attention: half-width D of the window [p_t-D, p_t+D]; "
                       "mocha: the chunk's width w.", above=0)
  location_positions: int = option(
      128, "Location attention: source positions scored (later ones get weight 0).", above=0)
  # precision.matmul's operands.
  matmul_dtype: str = option(
      "float32", "Operands of the products with the kernels, attention's excepted (float32 "
      "accumulation; parameters, gradients and everything else stay float32): bfloat16 for "
      "GPUs, TPUs and CPUs with bfloat16 instructions.")

  def __post_init__(self):
    _check(self.cell in CELLS, "cell", f"must be one of {CELLS}, got {self.cell!r}")
    _check(self.query in QUERIES, "query",
           f"must be one of {QUERIES}, got {self.query!r}")
    _check(self.attention in ATTENTIONS, "attention",
           f"must be one of {ATTENTIONS}, got {self.attention!r}")
    _check(self.matmul_dtype in MATMUL_DTYPES, "matmul_dtype",
           f"must be one of {MATMUL_DTYPES}, got {self.matmul_dtype!r}")
    check_bounds(self)
    _check(not needs_equal_sizes(self.attention)
           or self.encoder_output_size == self.hidden_size, "attention",
           f"{self.attention} scores q . k without parameters, so an encoder state "
           f"({self.encoder_output_size} = {'2 x ' if self.bidirectional else ''}"
           f"{self.encoder_hidden_size} per direction) must have the decoder's hidden_size "
           f"({self.hidden_size}): set encoder_size to "
           f"{self.hidden_size // (2 if self.bidirectional else 1)}, or use general attention")
    _check(self.attention not in MULTIHEAD or (
        self.attention_size % self.num_heads == 0
        and self.encoder_output_size % self.num_heads == 0), "num_heads",
           f"{self.num_heads} must divide attention_size ({self.attention_size}) and the "
           f"encoder output size ({self.encoder_output_size}) for {self.attention}")
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

  task: str = option("reverse", "A synthetic task, or translation of --data_dir.")
  vocab_size: int = option(
      20, "Vocabulary size including PAD, BOS, EOS (translation: SentencePiece pieces).",
      above=NUM_SPECIAL)
  min_len: int = option(1, "Shortest source sequence (synthetic tasks).", above=0)
  max_len: int = option(
      30, "Longest source sequence; translation: longest training pair in subwords.", above=0)
  train_size: int = option(50_000, "Training examples.", above=0)
  eval_size: int = option(1_000, "Held-out evaluation examples.", above=0)
  seed: int = option(0, "Seed of the generated data and of the training order.")
  # Translation keeps the sequence of bucket widths that `seed` gives, so runs differing
  # only here have batches of the same shape at every step (and can train as one program,
  # seeds.py).
  shuffle_seed: int | None = option(
      None, "Reshuffles the training order: synthetic tasks take it from this seed; "
      "translation reshuffles the pairs within each length bucket, keeping the sequence of "
      "batch widths of --data_seed.")
  data_dir: str = option(
      "", f"Translation: directory of <split>.<lang>[.gz] files (default {DEFAULT_DATA_DIR}, "
      f"where experiments.download puts Multi30k).")
  src_lang: str = option("en", "Translation: source language code.")
  tgt_lang: str = option("de", "Translation: target language code.")
  joint_vocab: bool = option(True, "Translation: one vocabulary for both languages.")
  # Each merge is skipped at this rate (translation.Resegmented). Validation and test text
  # are always segmented as usual.
  subword_dropout: float = option(
      0.0, "Translation: BPE-dropout rate of the training pairs, each epoch's sentences "
      "segmented afresh (Provilkov et al. 2020 use 0.1); 0: one fixed segmentation.",
      lower=0.0, upper=0.99)
  # Kim & Rush 2016. The vocabulary is still trained on the training split.
  distilled_targets: str = option(
      "", "Translation: a file of a teacher's translations of the training split's source "
      "lines, line for line (experiments.translate of train.<src_lang>); its pairs join the "
      "training pairs (sequence-level knowledge distillation).")

  def __post_init__(self):
    _check(self.task in TASKS, "task", f"must be one of {TASKS}, got {self.task!r}")
    if self.task == "translation" and not self.data_dir:
      object.__setattr__(self, "data_dir", DEFAULT_DATA_DIR)  # frozen: set once, here
    if self.task == "translation":
      _check(self.src_lang != self.tgt_lang, "tgt_lang",
             f"must differ from src_lang, got {self.tgt_lang!r} for both")
    check_bounds(self)
    _check(self.subword_dropout == 0.0 or self.task == "translation", "subword_dropout",
           f"applies to task 'translation' only, not {self.task!r}")
    _check(not self.distilled_targets or self.task == "translation", "distilled_targets",
           f"applies to task 'translation' only, not {self.task!r}")
    _check(self.min_len <= self.max_len, "min_len",
           f"must be <= max_len ({self.max_len}), got {self.min_len}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation and bookkeeping options."""

  num_steps: int = option(1_200, "Training steps.", above=0)
  batch_size: int = option(64, "Sentences per batch.", above=0)
  learning_rate: float = option(3e-3, "Adam's peak learning rate.", above=0.0)
  warmup_steps: int = option(200, "Linear warm-up steps.", lower=0)
  cooldown_steps: int = option(300, "Final steps over which the rate decays to 0.", lower=0)
  clip_norm: float = option(1.0, "Global gradient-norm clip; 0 disables.", lower=0.0)
  label_smoothing: float = option(0.0, "Label smoothing.", lower=0.0, upper=0.99)
  # See et al. 2017, eq. 12-13.
  coverage_loss_weight: float = option(
      0.0, "Weight of the coverage loss sum_j min(a_tj, cov_tj) added per target token "
      "(cov_t: the weights of the earlier steps); 0: none.", lower=0.0)
  seed: int = option(0, "Seed of initialisation and dropout.")
  log_every: int = option(100, "Steps between log lines.", above=0)
  eval_every: int = option(400, "Steps between evaluations.", above=0)
  checkpoint_every: int = option(400, "Steps between checkpoints.", above=0)
  keep_checkpoints: int = option(2, "Latest checkpoints kept (the best is kept too).", above=0)
  num_plots: int = option(3, "Evaluation examples drawn as attention heatmaps.", lower=0)
  bleu_every: int = option(
      0, "Translation: steps between validation BLEU scores; 0: at every evaluation.", lower=0)
  patience: int = option(
      0, "Stop after this many scored evaluations without a new best; 0: never.", lower=0)
  # As the LIUM systems train (steps.learning_rate).
  plateau_patience: int = option(
      0, "Multiply the learning rate by --plateau_factor after this many scored evaluations "
      "without a new best, and again after as many more (on top of the schedule); 0: never.",
      lower=0)
  plateau_factor: float = option(
      0.5, "Learning-rate factor on a plateau (--plateau_patience).", above=0.0, below=1.0)
  max_nonfinite_steps: int = option(
      10, "Stop after this many consecutive steps with a non-finite loss or gradient (their "
      "updates are skipped).", above=0)
  # 1: a plain run.
  num_seeds: int = option(
      1, "Train this many independent models as one vmapped program: model k has "
      "--seed=seed+k and --shuffle_seed=shuffle_seed+k (data_seed+k if unset; model 0 keeps "
      "the flags' own order).", above=0)
  loss_chunk_rows: int = option(
      LOSS_CHUNK_ROWS, "Target positions (batch x time) whose logits the loss "
      "forms at once; 0: all. Speed and memory only: results are the same up to float "
      "rounding.", lower=0)
  # jax.checkpoint: the widest, rarest batches set the step's peak memory.
  remat_width: int = option(
      0, "Batches at least this wide (source or target subwords + EOS) recompute the "
      "encoder's and decoder's time steps in the backward pass instead of keeping their "
      "activations: less peak memory, more time on those batches; 0: never. Results are the "
      "same up to float rounding.", lower=0)
  # Fine-tuning (fine_tune.py). Read only while the run has no checkpoint of its own.
  init_from: str = option(
      "", "Fine-tuning: a training workdir whose parameters (at --init_checkpoint) start this "
      "run, with a fresh optimizer state and schedule; its vocabulary is copied into a new "
      "workdir. The model must have the same parameter shapes. Read only until this run "
      "saves its first checkpoint.")
  init_checkpoint: str = option(
      "best", "Checkpoint of --init_from: best (by validation score), latest, or a step.")

  def __post_init__(self):
    check_bounds(self)
    _check(not self.plateau_patience or self.num_seeds == 1, "plateau_patience",
           f"lowers one run's rate on its own plateau, not those of num_seeds={self.num_seeds} "
           f"stacked runs")
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
    _check(not self.train.coverage_loss_weight
           or weights_are_distributions(self.model.attention), "coverage_loss_weight",
           f"compares weights that sum to 1 over the source with their running sum; "
           f"{self.model.attention} attention's do not (use a global, sparse, multi-head or "
           f"coverage variant)")

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
