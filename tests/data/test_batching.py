"""Length buckets: assignment, epochs that cover every pair once, fixed shapes, purity."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from attn_jax.config import EOS_ID
from attn_jax.data import batching, dataset, pipeline

WIDTHS = (4, 8, 12)


@pytest.fixture(scope="module")
def pairs():
  rng = np.random.default_rng(0)
  src = [rng.integers(3, 50, rng.integers(1, 14)) for _ in range(203)]
  tgt = [rng.integers(3, 50, rng.integers(1, 14)) for _ in range(203)]
  return src, tgt


def _key(batch: dataset.Batch, row: int) -> tuple:
  n, m = batch.src_len[row], batch.tgt_len[row]
  return tuple(batch.src[row, :n]), tuple(batch.tgt_out[row, :m])


def test_each_pair_goes_to_the_narrowest_bucket_that_fits(pairs):
  src, tgt = pairs
  b = batching.bucket_pairs(src, tgt, (12, 4, 8))
  assert b.widths == WIDTHS
  expected = collections.Counter()
  too_long = 0
  for s, t in zip(src, tgt):
    need = max(len(s), len(t)) + 1
    fits = [w for w in WIDTHS if w >= need]
    if fits:
      expected[fits[0]] += 1
    else:
      too_long += 1
  assert b.filtered == too_long > 0
  for w, ds in zip(b.widths, b.sets):
    assert ds.src.shape[1] == ds.tgt_out.shape[1] == w
    assert dataset.size(ds) == expected[w]
    assert (ds.src[np.arange(dataset.size(ds)), ds.src_len - 1] == EOS_ID).all()


def test_an_epoch_covers_every_pair_exactly_once_in_fixed_shapes(pairs):
  src, tgt = pairs
  b = batching.bucket_pairs(src, tgt, WIDTHS)
  per_epoch = batching.batches_per_epoch(b, 16)
  seen, shapes = collections.Counter(), set()
  for step in range(per_epoch):
    batch = batching.train_batch(b, step, 16, seed=0)
    shapes.add(batch.src.shape)
    real = batch.tgt_len > 0
    assert real[0] and (real[:real.sum()]).all()  # fillers only at the end
    for row in np.flatnonzero(real):
      seen[_key(batch, row)] += 1
  everything = collections.Counter(
      _key(ds, r) for ds in b.sets for r in range(dataset.size(ds)))
  assert seen == everything
  assert shapes == {(16, w) for w, ds in zip(b.widths, b.sets) if dataset.size(ds)}


def test_train_batch_is_a_pure_function_of_step_and_seed(pairs):
  src, tgt = pairs
  b = batching.bucket_pairs(src, tgt, WIDTHS)
  first = [batching.train_batch(b, s, 8, seed=1) for s in range(30)]
  again = [batching.train_batch(b, s, 8, seed=1) for s in reversed(range(30))][::-1]
  for x, y in zip(first, again):
    for a, c in zip(x, y):
      np.testing.assert_array_equal(a, c)
  other = [batching.train_batch(b, s, 8, seed=2) for s in range(30)]
  assert any(x.src.shape != y.src.shape or (x.src != y.src).any() for x, y in zip(first, other))
  per_epoch = batching.batches_per_epoch(b, 8)
  assert batching.data_position(b, per_epoch + 3, 8) == {"epoch": 1, "batch_in_epoch": 3}


def test_eval_batches_visit_every_pair_once_in_order(pairs):
  src, tgt = pairs
  b = batching.bucket_pairs(src, tgt, WIDTHS)
  count = 0
  for bucket, rows, batch in batching.eval_batches(b, 10):
    assert batch.src.shape == (10, b.widths[bucket])
    assert (batch.tgt_len[:len(rows)] > 0).all() and (batch.tgt_len[len(rows):] == 0).all()
    np.testing.assert_array_equal(batch.src[:len(rows)], b.sets[bucket].src[rows])
    count += len(rows)
  assert count == sum(dataset.size(ds) for ds in b.sets)


def test_index_maps_rows_back_to_the_input(pairs):
  src, tgt = pairs
  b = batching.bucket_pairs(src, tgt, WIDTHS)
  for ds, index in zip(b.sets, b.index):
    assert len(index) == dataset.size(ds)
    for row, i in enumerate(index):
      np.testing.assert_array_equal(ds.src[row, :ds.src_len[row] - 1], src[i])
  assert sum(len(i) for i in b.index) + b.filtered == len(src)


def test_first_batch_per_width_looks_to_the_end_of_the_epoch_only(pairs):
  src, tgt = pairs
  buckets = batching.bucket_pairs(src, tgt, WIDTHS)
  train = pipeline.bucketed_train(buckets, 16, seed=0)
  per_epoch = batching.batches_per_epoch(buckets, 16)
  widths = [train.batch(s).src.shape[1] for s in range(2 * per_epoch)]  # [steps]
  found = pipeline.first_batch_per_width(train, 0)
  assert set(found) == set(train.widths) == set(widths[:per_epoch])
  for w, batch in found.items():  # each the first batch of its width
    np.testing.assert_array_equal(batch.src, train.batch(widths.index(w)).src)
  assert set(pipeline.first_batch_per_width(train, 0, 2)) == set(widths[:2])
  late = per_epoch - 2  # the last two steps of the first epoch, not the next epoch's
  assert set(pipeline.first_batch_per_width(train, late)) == set(widths[late:per_epoch])


def test_first_batch_per_width_across_epochs_finds_a_width_only_a_later_epoch_has():
  # epochs of 3 steps; the widths of a resegmented stream, 12 first met in epoch 1
  widths = (4, 8, 4, 8, 12, 4)
  batch = lambda step: dataset.Batch(*(np.zeros((2, widths[step]), np.int32),) * 6)  # noqa: E731
  train = pipeline.TrainData(batch=batch, position=lambda s: {"epoch": s // 3, "batch_in_epoch": s % 3},
                           size=6, widths=(4, 8, 12))
  assert set(pipeline.first_batch_per_width(train, 0)) == {4, 8}
  assert set(pipeline.first_batch_per_width(train, 0, 6, within_epoch=False)) == {4, 8, 12}
  assert set(pipeline.first_batch_per_width(train, 0, 4, within_epoch=False)) == {4, 8}
  with pytest.raises(ValueError, match="stop"):
    pipeline.first_batch_per_width(train, 0, within_epoch=False)
