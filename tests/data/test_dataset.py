"""Datasets and batches: layout, train_batch as a pure function of step, eval filler rows."""

from __future__ import annotations

import numpy as np
import pytest

from attn_jax.config import BOS_ID, EOS_ID, PAD_ID
from attn_jax.data import dataset


def _dataset(n=10, width=6, seed=0):
  rng = np.random.default_rng(seed)
  sources, seen = [], set()
  while len(sources) < n:  # distinct rows, so that batches can be compared as sets
    s = rng.integers(3, 9, size=rng.integers(1, width)).astype(np.int32)
    if s.tobytes() not in seen:
      seen.add(s.tobytes())
      sources.append(s)
  targets = [s[::-1] for s in sources]
  aligns = [np.arange(len(s))[::-1] for s in sources]
  return dataset.from_sequences(sources, targets, aligns, width, width), sources


def test_from_sequences_layout():
  sources = [np.array([5, 6, 7]), np.array([4])]
  targets = [np.array([7, 6, 5]), np.array([4])]
  aligns = [np.array([2, 1, 0]), np.array([0])]
  ds = dataset.from_sequences(sources, targets, aligns, 5, 5)
  np.testing.assert_array_equal(ds.src, [[5, 6, 7, EOS_ID, PAD_ID], [4, EOS_ID, 0, 0, 0]])
  np.testing.assert_array_equal(ds.src_len, [4, 2])
  np.testing.assert_array_equal(ds.tgt_in, [[BOS_ID, 7, 6, 5, 0], [BOS_ID, 4, 0, 0, 0]])
  np.testing.assert_array_equal(ds.tgt_out, [[7, 6, 5, EOS_ID, 0], [4, EOS_ID, 0, 0, 0]])
  np.testing.assert_array_equal(ds.tgt_len, [4, 2])
  # EOS has no gold alignment.
  np.testing.assert_array_equal(ds.align, [[2, 1, 0, -1, -1], [0, -1, -1, -1, -1]])
  assert all(x.dtype == np.int32 for x in ds)
  assert dataset.size(ds) == 2


def test_train_batch_is_a_pure_function_of_step():
  ds, _ = _dataset(n=10)
  a = [dataset.train_batch(ds, s, 3, seed=7) for s in range(8)]
  b = [dataset.train_batch(ds, s, 3, seed=7) for s in reversed(range(8))][::-1]  # any order
  for x, y in zip(a, b):
    for u, v in zip(x, y):
      np.testing.assert_array_equal(u, v)
  assert all(x.src.shape == (3, 6) for x in a)
  # Within an epoch (3 batches of 3 from 10 rows) no row repeats.
  rows = lambda batch: {r.tobytes() for r in np.concatenate([batch.src, batch.tgt_out], 1)}
  epoch0 = [rows(a[s]) for s in range(3)]
  assert len(set().union(*epoch0)) == 9
  # The next epoch is another permutation.
  assert [a[s].src.tolist() for s in range(3)] != [a[s].src.tolist() for s in range(3, 6)]
  other_seed = dataset.train_batch(ds, 0, 3, seed=8)
  assert not np.array_equal(other_seed.src, a[0].src)


def test_train_batch_larger_than_dataset_is_an_error():
  ds, _ = _dataset(n=4)
  with pytest.raises(ValueError, match="batch_size"):
    dataset.train_batch(ds, 0, 5, seed=0)


def test_data_position():
  ds, _ = _dataset(n=10)
  assert dataset.data_position(ds, 0, 3) == {"epoch": 0, "batch_in_epoch": 0}
  assert dataset.data_position(ds, 4, 3) == {"epoch": 1, "batch_in_epoch": 1}


@pytest.mark.parametrize("batch_size", [3, 4, 10, 16])
def test_eval_batches(batch_size):
  ds, _ = _dataset(n=10)
  batches = list(dataset.eval_batches(ds, batch_size))
  assert len(batches) == -(-10 // batch_size)
  assert all(x.shape[0] == batch_size for b in batches for x in b)
  real = [b for b in batches]
  stacked = dataset.Batch(*(np.concatenate(xs) for xs in zip(*real)))
  # Rows come in order; the filler rows after them have tgt_len 0.
  for field_all, field_ds in zip(stacked, ds):
    np.testing.assert_array_equal(field_all[:10], field_ds)
  assert np.all(stacked.tgt_len[10:] == 0)
  assert np.all(stacked.src_len >= 1)  # fillers still encode a valid source
