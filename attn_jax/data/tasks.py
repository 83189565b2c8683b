"""Synthetic sequence tasks with gold alignments, generated from a seed.

Symbols are ids NUM_SPECIAL .. vocab_size-1. For a source x_1..x_n:

* copy: y_j = x_j, aligned to j.
* reverse: y_j = x_{n+1-j}, aligned to n+1-j.
* sort: y = x sorted ascending; y_j aligned to the position of x it came from
  (stable, so equal symbols align left to right).

The target's EOS has no gold alignment (-1). The evaluation set comes from a
different random stream than the training set, and evaluation sources that also
occur in the training set are skipped, so the evaluation set is held out.
"""

from __future__ import annotations

import numpy as np

from attn_jax.config import ConfigError, DataConfig, NUM_SPECIAL
from attn_jax.data import dataset

SPECIAL_NAMES = ("<pad>", "<s>", "</s>")

TRAIN_STREAM, EVAL_STREAM = 0, 1


def _alignment(task: str, src: np.ndarray) -> np.ndarray:
  """Gold source position of each target position: int [n]."""
  n = len(src)
  if task == "copy":
    return np.arange(n)
  if task == "reverse":
    return np.arange(n)[::-1]
  if task == "sort":
    return np.argsort(src, kind="stable")
  raise ValueError(f"unknown task {task!r}")


def _sample(config: DataConfig, count: int, stream: int) -> list[np.ndarray]:
  rng = np.random.default_rng([config.seed, stream])
  lengths = rng.integers(config.min_len, config.max_len + 1, size=count)
  symbols = rng.integers(NUM_SPECIAL, config.vocab_size, size=(count, config.max_len))
  return [symbols[i, :lengths[i]].astype(np.int32) for i in range(count)]


def _build(config: DataConfig, sources: list[np.ndarray]) -> dataset.Dataset:
  aligns = [_alignment(config.task, s) for s in sources]
  targets = [s[a] for s, a in zip(sources, aligns)]
  width = config.max_len + 1  # room for EOS
  return dataset.from_sequences(sources, targets, aligns, width, width)


def make_datasets(config: DataConfig) -> tuple[dataset.Dataset, dataset.Dataset]:
  """(train, eval) datasets for the configured task; eval sources never occur in train."""
  train_src = _sample(config, config.train_size, TRAIN_STREAM)
  seen = {s.tobytes() for s in train_src}
  candidates = _sample(config, 4 * config.eval_size, EVAL_STREAM)
  eval_src = [s for s in candidates if s.tobytes() not in seen][:config.eval_size]
  if len(eval_src) < config.eval_size:
    raise ConfigError(f"eval_size: only {len(eval_src)} held-out sequences exist for "
                     f"lengths {config.min_len}-{config.max_len}; lower eval_size")
  return _build(config, train_src), _build(config, eval_src)


def token_names(ids) -> list[str]:
  """Readable names of synthetic token ids: specials, then a, b, c, ... (s26, s27, ... past z)."""
  def name(i: int) -> str:
    if i < NUM_SPECIAL:
      return SPECIAL_NAMES[i]
    k = i - NUM_SPECIAL
    return chr(ord("a") + k) if k < 26 else f"s{k}"
  return [name(int(i)) for i in ids]
