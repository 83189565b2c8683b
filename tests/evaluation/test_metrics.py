"""Losses and metrics against NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.evaluation import metrics


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_target_mask():
  m = np.asarray(metrics.target_mask(jnp.array([0, 2, 4]), 4))
  np.testing.assert_array_equal(m, [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]])


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_sum_matches_numpy(smoothing):
  rng = np.random.default_rng(0)
  B, T, V = 3, 5, 7
  logits = rng.normal(scale=2.0, size=(B, T, V)).astype(np.float32)
  targets = rng.integers(0, V, size=(B, T))
  mask = np.arange(T)[None, :] < np.array([5, 2, 0])[:, None]
  got = float(metrics.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(targets),
                                        jnp.asarray(mask), smoothing))
  log_p = _log_softmax(logits.astype(np.float64))
  ref = 0.0
  for b in range(B):
    for t in range(T):
      if mask[b, t]:
        q = np.full(V, smoothing / V)  # smoothed target distribution
        q[targets[b, t]] += 1.0 - smoothing
        ref += -(q * log_p[b, t]).sum()
  np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_cross_entropy_ignores_masked_positions():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
  targets = rng.integers(0, 5, size=(2, 4))
  mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
  a = metrics.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  logits2, targets2 = logits.copy(), targets.copy()
  logits2[~mask] = 1e6  # garbage, even huge, at padding
  targets2[~mask] = 0
  b = metrics.cross_entropy_sum(jnp.asarray(logits2), jnp.asarray(targets2), jnp.asarray(mask))
  assert float(a) == float(b)
  assert float(metrics.cross_entropy_sum(jnp.asarray(logits), jnp.asarray(targets),
                                         jnp.zeros((2, 4), bool))) == 0.0


def test_attention_sums_matches_numpy():
  rng = np.random.default_rng(2)
  B, T, S = 3, 4, 5
  w = rng.random(size=(B, T, S))
  w[:, :, -1] = 0.0  # a zero weight: 0 log 0 = 0
  w /= w.sum(-1, keepdims=True)
  gold = rng.integers(0, S, size=(B, T))
  gold[0, 1] = -1  # no gold alignment
  gold[1, 0] = np.argmax(w[1, 0])  # at least one hit
  mask = np.arange(T)[None, :] < np.array([4, 3, 0])[:, None]
  got = metrics.attention_sums(jnp.asarray(w, jnp.float32), jnp.asarray(gold), jnp.asarray(mask))
  has_gold = mask & (gold >= 0)
  hits = ((w.argmax(-1) == gold) & has_gold).sum()
  ent = -np.where(w > 0, w * np.log(np.where(w > 0, w, 1.0)), 0.0).sum(-1)
  assert int(got["align_hits"]) == hits and hits >= 1
  assert int(got["align_count"]) == has_gold.sum() == 6
  np.testing.assert_allclose(float(got["entropy_sum"]), ent[mask].sum(), rtol=1e-5)
  assert np.isfinite(float(got["entropy_sum"]))


def test_coverage_overlap_matches_see_et_al_eq_12():
  """sum_j min(a_tj, cov_tj), cov_t = sum_{t'<t} a_t' (See et al. 2017, eq. 10 and 12)."""
  rng = np.random.default_rng(3)
  w = rng.random(size=(2, 4, 5))
  w /= w.sum(-1, keepdims=True)
  got = np.asarray(metrics.coverage_overlap(jnp.asarray(w, jnp.float32)))
  for b in range(2):
    for t in range(4):
      cov = w[b, :t].sum(0)
      np.testing.assert_allclose(got[b, t], np.minimum(w[b, t], cov).sum(), rtol=1e-5, atol=1e-7)
  assert np.all(got[:, 0] == 0.0)
  again = jnp.asarray(np.eye(5)[[1, 1, 1]][None], jnp.float32)  # one position, three times
  np.testing.assert_allclose(np.asarray(metrics.coverage_overlap(again))[0], [0, 1, 1])
  mask = jnp.asarray([[True, True, False]])
  sums = metrics.attention_sums(again, jnp.zeros((1, 3), jnp.int32), mask)
  assert float(sums["coverage_sum"]) == 1.0  # the padded third step is not counted


def test_uniform_attention_entropy_is_log_length():
  S = 6
  w = jnp.full((1, 1, S), 1.0 / S)
  got = metrics.attention_sums(w, jnp.zeros((1, 1), jnp.int32), jnp.ones((1, 1), bool))
  np.testing.assert_allclose(float(got["entropy_sum"]), math.log(S), rtol=1e-6)


def test_sequence_sums_exact_match_logic():
  E = 2
  tgt_out = np.array([[5, 6, E, 0],
                      [5, 6, E, 0],
                      [5, 6, E, 0],
                      [7, E, 0, 0],
                      [4, 4, 4, E],
                      [3, E, 0, 0]])
  tgt_len = np.array([3, 3, 3, 2, 4, 0])  # the last row is filler
  pred = np.array([[5, 6, E, 0, 0],   # exact
                   [5, 6, E, 0, 0],   # same tokens but a length mismatch -> wrong
                   [5, 7, E, 0, 0],   # a wrong token
                   [7, E, 0, 0, 0],   # exact
                   [4, 4, 4, 4, 4],   # no EOS within max_len
                   [3, E, 0, 0, 0]])  # filler: never counted
  pred_len = np.array([3, 4, 3, 2, 5, 2])
  got = metrics.sequence_sums(pred, pred_len, tgt_out, tgt_len)
  assert got["seq_hits"] == 2
  assert got["seq_count"] == 5
  assert got["greedy_token_count"] == 3 + 3 + 3 + 2 + 4
  assert got["greedy_token_hits"] == 3 + 3 + 2 + 2 + 3


def test_exact_matches():
  E = 2
  tgt_out = np.array([[5, 6, E], [5, 6, E], [7, E, 0], [3, E, 0]])
  tgt_len = np.array([3, 3, 2, 0])
  pred = np.array([[5, 6, E, 0], [5, 6, E, 0], [7, 4, 0, 0], [3, E, 0, 0]])
  pred_len = np.array([3, 4, 2, 2])
  got = metrics.exact_matches(pred, pred_len, tgt_out, tgt_len)
  np.testing.assert_array_equal(got, [True, False, False, False])  # filler rows never match
  assert metrics.sequence_sums(pred, pred_len, tgt_out, tgt_len)["seq_hits"] == int(got.sum())


def test_by_length_buckets():
  lengths = np.array([1, 5, 6, 10, 11, 3])
  hits = np.array([True, False, True, True, False, True])
  assert metrics.by_length(lengths, hits) == {"1-5": [2, 3], "6-10": [2, 2], "11-15": [0, 1]}
  assert metrics.by_length(lengths, hits, width=3) == {
      "1-3": [2, 2], "4-6": [1, 2], "10-12": [1, 2]}
  assert metrics.by_length(np.array([], int), np.array([], bool)) == {}


def test_sequence_sums_output_narrower_than_reference():
  tgt_out = np.array([[5, 6, 7, 2]])
  got = metrics.sequence_sums(np.array([[5, 6]]), np.array([2]), tgt_out, np.array([4]))
  assert got == {"seq_hits": 0, "seq_count": 1, "greedy_token_hits": 2, "greedy_token_count": 4}


def test_summarize():
  out = metrics.summarize({"loss_sum": 6.0, "token_count": 3, "token_hits": 2,
                           "align_hits": 1, "align_count": 2, "entropy_sum": 1.5,
                           "seq_hits": 1, "seq_count": 4, "greedy_token_hits": 3,
                           "greedy_token_count": 6})
  assert out["loss"] == 2.0
  np.testing.assert_allclose(out["perplexity"], math.exp(2.0))
  assert out["token_accuracy"] == 2 / 3
  assert out["alignment_accuracy"] == 0.5
  assert out["attention_entropy"] == 0.5
  assert out["sequence_accuracy"] == 0.25
  assert out["greedy_token_accuracy"] == 0.5
  empty = metrics.summarize({"seq_hits": 0, "seq_count": 0, "greedy_token_hits": 0,
                             "greedy_token_count": 0})
  assert math.isnan(empty["sequence_accuracy"])
  assert "loss" not in empty and "alignment_accuracy" not in empty


def test_length_groups_are_ordered_and_open_ended():
  groups = metrics.length_groups([25, 3, 12, 10, 60], (10, 20, 30))
  assert groups == {"1-10": [1, 3], "11-20": [2], "21-30": [0], "31+": [4]}
  assert list(groups) == ["1-10", "11-20", "21-30", "31+"]
  assert metrics.length_groups([4], ()) == {"1+": [0]}


def test_zero_weight_share_counts_real_pairs_only():
  w = np.array([[[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0]]], np.float32)
  mask = np.array([[True, True, False]])  # the third target position is padding
  src_len = np.array([3])  # the fourth source position is padding
  got = metrics.attention_sums(jnp.asarray(w), jnp.zeros((1, 3), jnp.int32), jnp.asarray(mask),
                               jnp.asarray(src_len))
  assert int(got["weight_count"]) == 6 and int(got["zero_weights"]) == 3
  assert metrics.summarize({**jax.device_get(got), "token_count": 2})["zero_weight_share"] == 0.5


def test_repeated_ngrams_count_only_repeats_beyond_the_reference():
  # (5, 6) three times against once, (6, 5) twice against never (the first is free)
  assert metrics.repeated_ngrams([5, 6, 5, 6, 5, 6], [5, 6, 7], 2) == (3, 5)
  assert metrics.repeated_ngrams([5, 6, 5, 6], [5, 6, 5, 6], 2) == (0, 3)  # the reference's own
  assert metrics.repeated_ngrams([4, 4, 4], [9], 1) == (2, 3)
  assert metrics.repeated_ngrams([4], [4], 2) == (0, 0)


def test_unattended_sources_by_argmax_and_steps_without_weight():
  w = np.array([[0.7, 0.2, 0.1, 0.0],
                [0.6, 0.3, 0.1, 0.0],
                [0.0, 0.0, 0.0, 0.0],  # monotonic attention past the end: attends to nothing
                [0.1, 0.1, 0.8, 0.0]])
  assert metrics.unattended_sources(w) == (2, 4)  # positions 1 and 3


def test_head_sums_are_attention_sums_per_head():
  rng = np.random.default_rng(4)
  w = rng.random(size=(2, 3, 4, 5))
  w /= w.sum(-1, keepdims=True)
  gold = rng.integers(0, 5, size=(2, 3))
  mask = np.array([[True, True, False], [True, True, True]])
  got = metrics.head_sums(jnp.asarray(w, jnp.float32), jnp.asarray(gold), jnp.asarray(mask))
  for n in range(4):
    one = metrics.attention_sums(jnp.asarray(w[:, :, n], jnp.float32), jnp.asarray(gold),
                                 jnp.asarray(mask))
    assert int(got["head_align_hits"][n]) == int(one["align_hits"])
    np.testing.assert_allclose(float(got["head_entropy_sum"][n]), float(one["entropy_sum"]),
                               rtol=1e-6)
  rates = metrics.summarize({"align_count": 5, "token_count": 5,
                             "head_align_hits": np.array([1, 4, 2, 0]),
                             "head_entropy_sum": np.array([1.0, 2.0, 3.0, 4.0])})
  assert rates["best_head"] == 1.0 and rates["best_head_alignment_accuracy"] == 0.8
  assert rates["best_head_entropy"] == 0.4
