"""In-memory parallel datasets and the fixed-shape batches drawn from them.

The batch taken at training step s is a pure function of (dataset, seed, s), so
the data position needs no state of its own: resuming at step s resumes the data.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from attn_jax.batch import Batch
from attn_jax.config import BOS_ID, EOS_ID, PAD_ID


Dataset = Batch  # a dataset is one big batch; batches are row subsets of it


def from_sequences(sources: list[np.ndarray], targets: list[np.ndarray],
                   alignments: list[np.ndarray] | None, src_width: int,
                   tgt_width: int) -> Dataset:
  """Pads token sequences (without specials) into a Dataset; `alignments` None: no gold.

  EOS gets no gold alignment (-1): a model may attend anywhere when it decides
  to stop, so alignment metrics count the content tokens only.
  """
  n = len(sources)
  ds = Batch(src=np.full((n, src_width), PAD_ID, np.int32),
             src_len=np.zeros(n, np.int32),
             tgt_in=np.full((n, tgt_width), PAD_ID, np.int32),
             tgt_out=np.full((n, tgt_width), PAD_ID, np.int32),
             tgt_len=np.zeros(n, np.int32),
             align=np.full((n, tgt_width), -1, np.int32))
  if alignments is None:
    alignments = [np.full(len(t), -1) for t in targets]
  for i, (s, t, a) in enumerate(zip(sources, targets, alignments)):
    ds.src[i, :len(s)] = s
    ds.src[i, len(s)] = EOS_ID
    ds.src_len[i] = len(s) + 1
    ds.tgt_in[i, 0] = BOS_ID
    ds.tgt_in[i, 1:len(t) + 1] = t
    ds.tgt_out[i, :len(t)] = t
    ds.tgt_out[i, len(t)] = EOS_ID
    ds.tgt_len[i] = len(t) + 1
    ds.align[i, :len(t)] = a
  return ds


def size(ds: Dataset) -> int:
  return ds.src.shape[0]


def take(ds: Dataset, rows: np.ndarray) -> Batch:
  return Batch(*(x[rows] for x in ds))


def train_batch(ds: Dataset, step: int, batch_size: int, seed: int) -> Batch:
  """The batch of training step `step`: epoch-wise shuffles seeded by (seed, epoch)."""
  per_epoch = size(ds) // batch_size
  if per_epoch == 0:
    raise ValueError(f"batch_size ({batch_size}) exceeds the training set ({size(ds)})")
  epoch, offset = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(size(ds))
  return take(ds, order[offset * batch_size:(offset + 1) * batch_size])


def data_position(ds: Dataset, step: int, batch_size: int) -> dict[str, int]:
  """Where step `step` reads: {"epoch", "batch_in_epoch"} (for checkpoint metadata)."""
  epoch, offset = divmod(step, max(1, size(ds) // batch_size))
  return {"epoch": epoch, "batch_in_epoch": offset}


def pad_rows(batch: Batch, batch_size: int) -> Batch:
  """Fills a short batch up to batch_size rows with copies of its first row, tgt_len 0.

  Filler rows keep a valid source (no all-masked attention) and add nothing to
  any loss or metric, all of which are masked by tgt_len.
  """
  short = batch_size - len(batch.src)
  if not short:
    return batch
  filler = take(batch, np.zeros(short, np.int64))._replace(tgt_len=np.zeros(short, np.int32))
  return Batch(*(np.concatenate([a, b]) for a, b in zip(batch, filler)))


def widen(batch: Batch, width: int) -> Batch:
  """A batch [rows, w] padded to [rows, width] (width >= w): PAD tokens, alignments -1."""
  if width == batch.src.shape[1]:
    return batch

  def pad(x, value):
    return np.pad(x, [(0, 0), (0, width - x.shape[1])], constant_values=value)
  return batch._replace(src=pad(batch.src, PAD_ID), tgt_in=pad(batch.tgt_in, PAD_ID),
                        tgt_out=pad(batch.tgt_out, PAD_ID), align=pad(batch.align, -1))


def eval_batches(ds: Dataset, batch_size: int) -> Iterator[Batch]:
  """Fixed-shape batches in order; the last is filled with rows of tgt_len 0."""
  for start in range(0, size(ds), batch_size):
    yield pad_rows(take(ds, np.arange(start, min(start + batch_size, size(ds)))), batch_size)


def stack(batches: list[Batch]) -> Batch:
  """N batches of one shape [batch, width] -> one Batch [N, batch, width]."""
  shapes = {tuple(x.shape for x in b) for b in batches}
  if len(shapes) != 1:
    raise ValueError(f"stacked runs' batches differ in shape: {sorted(shapes)}")
  return Batch(*(np.stack(field) for field in zip(*batches)))
