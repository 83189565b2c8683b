"""Greedy search: output conventions and consistency with the teacher-forced decoder."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

import helpers
from attn_jax.config import BOS_ID, EOS_ID, PAD_ID
from attn_jax.data import dataset
from attn_jax.decode import greedy_search
from attn_jax.model import seq2seq

MAX_LEN = 7
SRC_LENGTHS = [1, 3, 6, 2, 5, 4, 6, 3]
SRC_WIDTH = 6


@functools.lru_cache(maxsize=None)
def _fns(config):
  greedy = jax.jit(lambda p, s, n: greedy_search.greedy(p, s, n, config, MAX_LEN))
  forward = jax.jit(lambda p, b: seq2seq.forward(p, b, config))
  return greedy, forward


def _with_eos_bias(params, delta):
  params = jax.tree.map(lambda x: x, params)
  bias = params["decoder"]["output"]["bias"]
  params["decoder"]["output"]["bias"] = bias.at[EOS_ID].add(delta)
  return params


CONFIGS = {
    "gru-additive-current": helpers.tiny_model(attention="additive", query="current"),
    "lstm-dot-previous": helpers.tiny_model(cell="lstm", attention="dot", query="previous",
                                            input_feeding=False),
    "gru-none-current": helpers.tiny_model(attention="none"),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def decoded(request):
  """(config, params, src, src_len, hyp) where some, not all, outputs end before MAX_LEN."""
  config = CONFIGS[request.param]
  base = helpers.random_params(seq2seq.init, config, seed=0, scale=1.0)
  src, src_len = helpers.random_src(np.random.default_rng(0), SRC_LENGTHS, SRC_WIDTH)
  greedy, _ = _fns(config)
  for delta in np.linspace(-2.0, 6.0, 33):
    params = _with_eos_bias(base, float(delta))
    hyp = jax.device_get(greedy(params, src, src_len))
    lengths = hyp.lengths
    if (lengths == MAX_LEN).any() and (lengths < MAX_LEN).any() and (lengths[lengths < MAX_LEN] > 1).any():
      return config, params, src, src_len, hyp
  pytest.fail("no EOS bias gave a mix of finished and unfinished outputs")


def test_shapes_and_dtypes(decoded):
  config, _, src, _, hyp = decoded
  B = len(SRC_LENGTHS)
  assert hyp.tokens.shape == (B, MAX_LEN) and hyp.tokens.dtype == np.int32
  assert hyp.lengths.shape == (B,) and hyp.lengths.dtype == np.int32
  assert hyp.scores.shape == (B,) and hyp.scores.dtype == np.float32
  assert hyp.weights.shape == (B, MAX_LEN, SRC_WIDTH)


def test_eos_conventions(decoded):
  config, _, _, src_len, hyp = decoded
  for b in range(len(SRC_LENGTHS)):
    toks, n = hyp.tokens[b], int(hyp.lengths[b])
    eos = np.flatnonzero(toks == EOS_ID)
    if eos.size:
      assert n == eos[0] + 1  # up to and including the first EOS
      assert np.all(toks[n:] == PAD_ID)
    else:
      assert n == MAX_LEN
    assert np.all(toks[:n] != PAD_ID) and np.all(toks[:n] != BOS_ID)
    assert np.all(hyp.weights[b, n:] == 0.0)
    assert np.all(hyp.weights[b, :, src_len[b]:] == 0.0)
    if config.attention != "none":
      np.testing.assert_allclose(hyp.weights[b, :n].sum(-1), 1.0, atol=1e-6)
    else:
      assert np.all(hyp.weights[b] == 0.0)
  assert np.all(hyp.scores <= 0.0)


def _teacher_forced(decoded):
  config, params, src, src_len, hyp = decoded
  B = len(SRC_LENGTHS)
  tgt_in = np.concatenate([np.full((B, 1), BOS_ID, np.int32), hyp.tokens[:, :-1]], axis=1)
  batch = dataset.Batch(src=src, src_len=src_len, tgt_in=tgt_in, tgt_out=hyp.tokens,
                     tgt_len=hyp.lengths, align=np.zeros_like(hyp.tokens))
  logits, weights = _fns(config)[1](params, batch)
  return np.asarray(jax.nn.log_softmax(logits), np.float64), np.asarray(weights)


def test_greedy_tokens_are_teacher_forced_argmax(decoded):
  _, _, _, _, hyp = decoded
  log_p, _ = _teacher_forced(decoded)
  allowed = log_p.copy()
  allowed[..., [PAD_ID, BOS_ID]] = -np.inf  # never outputs
  for b in range(len(SRC_LENGTHS)):
    n = int(hyp.lengths[b])
    np.testing.assert_array_equal(np.argmax(allowed[b, :n], axis=-1), hyp.tokens[b, :n])


def test_greedy_scores_and_weights_match_teacher_forcing(decoded):
  _, _, _, _, hyp = decoded
  log_p, weights = _teacher_forced(decoded)
  for b in range(len(SRC_LENGTHS)):
    n = int(hyp.lengths[b])
    score = sum(log_p[b, t, hyp.tokens[b, t]] for t in range(n))
    np.testing.assert_allclose(hyp.scores[b], score, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(hyp.weights[b, :n], weights[b, :n], rtol=1e-5, atol=1e-6)


def test_pad_and_bos_are_never_emitted():
  config = CONFIGS["gru-additive-current"]
  params = helpers.random_params(seq2seq.init, config, seed=4, scale=1.0)
  bias = params["decoder"]["output"]["bias"]
  params["decoder"]["output"]["bias"] = bias.at[PAD_ID].set(50.0).at[BOS_ID].set(40.0)
  src, src_len = helpers.random_src(np.random.default_rng(1), SRC_LENGTHS, SRC_WIDTH)
  hyp = jax.device_get(_fns(config)[0](params, src, src_len))
  for b in range(len(SRC_LENGTHS)):
    n = int(hyp.lengths[b])
    assert np.all(hyp.tokens[b, :n] >= 2)  # EOS or a symbol
  # Their probability is still counted in the scores: log p of the emitted tokens is tiny.
  assert np.all(hyp.scores < -10.0)
