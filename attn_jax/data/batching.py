"""Length buckets: a fixed set of batch shapes, so compilations equal the bucket count.

Every pair goes to the narrowest bucket whose width holds both its source and its
target (EOS included); each bucket is a Dataset padded to (width, width). A
training epoch shuffles each bucket's rows, cuts them into batches of
`batch_size` sentences (a short last batch is filled with rows of tgt_len 0,
which the loss masks out) and shuffles the order of all batches; both shuffles
are seeded by (seed, epoch), so the batch of step s is a pure function of s and
a resumed run reads exactly what an uninterrupted one would.
"""

from __future__ import annotations

import bisect
import functools
from typing import NamedTuple

import numpy as np

from attn_jax.data import dataset


class Buckets(NamedTuple):
  widths: tuple[int, ...]  # ascending bucket widths (source and target, EOS included)
  sets: tuple[dataset.Dataset, ...]  # one per width; a bucket may be empty
  index: tuple[np.ndarray, ...]  # int [rows of each set]: the pair's position in the input
  filtered: int  # pairs longer than the widest bucket, left out


def bucket_pairs(sources: list[np.ndarray], targets: list[np.ndarray],
                 widths: tuple[int, ...]) -> Buckets:
  """Sorts token-id pairs (without specials) into buckets; over-long pairs are counted out."""
  widths = tuple(sorted(widths))
  members: list[list[int]] = [[] for _ in widths]
  filtered = 0
  for i, (s, t) in enumerate(zip(sources, targets)):
    b = bisect.bisect_left(widths, max(len(s), len(t)) + 1)  # + 1 for EOS
    if b == len(widths):
      filtered += 1
    else:
      members[b].append(i)
  sets = tuple(dataset.from_sequences([sources[i] for i in rows], [targets[i] for i in rows],
                                   None, w, w) for w, rows in zip(widths, members))
  index = tuple(np.asarray(rows, np.int64) for rows in members)
  return Buckets(widths=widths, sets=sets, index=index, filtered=filtered)


def _chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
  return [rows[i:i + size] for i in range(0, len(rows), size)]


@functools.lru_cache(maxsize=2)
def _epoch_plan(sizes: tuple[int, ...], batch_size: int, seed: int,
                epoch: int) -> tuple[tuple[int, np.ndarray], ...]:
  """The (bucket, rows) of every batch of one epoch, in training order."""
  rng = np.random.default_rng([seed, epoch])
  plan = [(b, rows) for b, n in enumerate(sizes)
          for rows in _chunks(rng.permutation(n), batch_size)]
  order = rng.permutation(len(plan))
  return tuple(plan[i] for i in order)


def batches_per_epoch(buckets: Buckets, batch_size: int) -> int:
  return sum(-(-dataset.size(s) // batch_size) for s in buckets.sets)


@functools.lru_cache(maxsize=32)
def _reshuffle(size: int, shuffle_seed: int, epoch: int, bucket: int) -> np.ndarray:
  return np.random.default_rng([shuffle_seed, epoch, bucket]).permutation(size)


def train_batch(buckets: Buckets, step: int, batch_size: int, seed: int,
                shuffle_seed: int | None = None) -> dataset.Batch:
  """The batch of training step `step`: [batch_size, width] for one bucket's width.

  `shuffle_seed` (if given) permutes the rows within each bucket afresh each epoch
  and leaves the sequence of buckets, hence of batch widths, that of `seed`.
  """
  per_epoch = batches_per_epoch(buckets, batch_size)
  if per_epoch == 0:
    raise ValueError("no training pairs fit the length buckets")
  epoch, index = divmod(step, per_epoch)
  sizes = tuple(dataset.size(s) for s in buckets.sets)
  bucket, rows = _epoch_plan(sizes, batch_size, seed, epoch)[index]
  if shuffle_seed is not None:
    rows = _reshuffle(sizes[bucket], shuffle_seed, epoch, bucket)[rows]
  return dataset.pad_rows(dataset.take(buckets.sets[bucket], rows), batch_size)


def data_position(buckets: Buckets, step: int, batch_size: int) -> dict[str, int]:
  """{"epoch", "batch_in_epoch"} of step `step` (for checkpoint metadata)."""
  epoch, index = divmod(step, max(1, batches_per_epoch(buckets, batch_size)))
  return {"epoch": epoch, "batch_in_epoch": index}


def eval_batches(buckets: Buckets, batch_size: int):
  """(bucket index, rows in that bucket, batch) for every pair, bucket by bucket."""
  for b, ds in enumerate(buckets.sets):
    for rows in _chunks(np.arange(dataset.size(ds)), batch_size):
      yield b, rows, dataset.pad_rows(dataset.take(ds, rows), batch_size)
