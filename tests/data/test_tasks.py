"""Synthetic tasks: targets, gold alignments, held-out evaluation set, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from attn_jax import config as config_lib
from attn_jax.config import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID
from attn_jax.data import tasks


def _data_config(task, **kw):
  base = dict(task=task, vocab_size=9, min_len=2, max_len=7, train_size=300, eval_size=50, seed=3)
  base.update(kw)
  return config_lib.DataConfig(**base)


def _rows(ds):
  for i in range(ds.src.shape[0]):
    n, m = int(ds.src_len[i]), int(ds.tgt_len[i])
    yield i, ds.src[i, :n - 1], ds.tgt_out[i, :m - 1], n, m


@pytest.mark.parametrize("task", config_lib.SYNTHETIC_TASKS)
def test_targets_and_alignments(task):
  dc = _data_config(task)
  for ds in tasks.make_datasets(dc):
    width = dc.max_len + 1
    assert ds.src.shape == ds.tgt_in.shape == ds.tgt_out.shape == ds.align.shape[:1] + (width,)
    for i, source, target, n, m in _rows(ds):
      assert dc.min_len <= n - 1 <= dc.max_len and m == n
      assert np.all((source >= NUM_SPECIAL) & (source < dc.vocab_size))
      assert ds.src[i, n - 1] == EOS_ID and np.all(ds.src[i, n:] == PAD_ID)
      expected = {"copy": source, "reverse": source[::-1], "sort": np.sort(source)}[task]
      np.testing.assert_array_equal(target, expected)
      # Teacher forcing input: BOS then the target, shifted right.
      assert ds.tgt_in[i, 0] == BOS_ID
      np.testing.assert_array_equal(ds.tgt_in[i, 1:m], target)
      assert np.all(ds.tgt_in[i, m:] == PAD_ID)
      assert ds.tgt_out[i, m - 1] == EOS_ID and np.all(ds.tgt_out[i, m:] == PAD_ID)
      # Every target symbol equals the source symbol it is aligned to.
      align = ds.align[i, :m - 1]
      np.testing.assert_array_equal(ds.src[i, align], target)
      assert sorted(align.tolist()) == list(range(n - 1))  # a permutation of the source
      # EOS has no gold alignment (tasks.py docstring), nor has padding.
      assert np.all(ds.align[i, m - 1:] == -1)
      if task == "copy":
        np.testing.assert_array_equal(align, np.arange(n - 1))
      elif task == "reverse":
        np.testing.assert_array_equal(align, np.arange(n - 1)[::-1])


def test_sort_alignment_is_stable():
  """Equal symbols align to their source positions left to right."""
  dc = _data_config("sort", vocab_size=5, max_len=7, train_size=100, eval_size=10)  # 2 symbols: many repeats
  train, _ = tasks.make_datasets(dc)
  checked = 0
  for i, source, target, n, m in _rows(train):
    align = train.align[i, :m - 1]
    for j in range(len(align) - 1):
      if target[j] == target[j + 1]:
        assert align[j] < align[j + 1]
        checked += 1
  assert checked > 0


@pytest.mark.parametrize("task", config_lib.SYNTHETIC_TASKS)
def test_eval_set_is_held_out(task):
  train, evals = tasks.make_datasets(_data_config(task, min_len=1, max_len=4, vocab_size=7,
                                                  train_size=60, eval_size=30))
  key = lambda ds, i: ds.src[i, :ds.src_len[i]].tobytes()
  seen = {key(train, i) for i in range(train.src.shape[0])}
  held = [key(evals, i) for i in range(evals.src.shape[0])]
  assert len(held) == 30
  assert not seen & set(held)


def test_same_seed_same_data_other_seed_other_data():
  dc = _data_config("reverse")
  a, b = tasks.make_datasets(dc), tasks.make_datasets(dc)
  for ds_a, ds_b in zip(a, b):
    for x, y in zip(ds_a, ds_b):
      np.testing.assert_array_equal(x, y)
  c = tasks.make_datasets(_data_config("reverse", seed=4))
  assert not np.array_equal(a[0].src, c[0].src)
  # The task changes the targets, not the sources.
  s = tasks.make_datasets(_data_config("sort"))
  np.testing.assert_array_equal(a[0].src, s[0].src)


def test_too_few_held_out_sequences_is_an_error():
  # One symbol, length 1: a single possible source, already in the training set.
  dc = _data_config("copy", vocab_size=4, min_len=1, max_len=1, train_size=5, eval_size=1)
  with pytest.raises(ValueError, match="eval_size"):
    tasks.make_datasets(dc)


def test_token_names():
  assert tasks.token_names([0, 1, 2, 3, 4, 28, 29, 30]) == [
      "<pad>", "<s>", "</s>", "a", "b", "z", "s26", "s27"]
