"""Ensemble decoding: the mean of the members' distributions, against single models and a
step-by-step NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.config import BOS_ID, EOS_ID, PAD_ID
from attn_jax.decode import beam, ensemble, greedy_search, searches
from attn_jax.model import decoder, encoder, seq2seq

MAX_LEN = 7
SRC_LENGTHS = [1, 3, 6, 2, 5]
SRC_WIDTH = 6
# Members that differ in width, cell, attention variant and query.
A = helpers.tiny_model(attention="additive", query="current")
B = helpers.tiny_model(cell="lstm", attention="general", query="previous", input_feeding=False,
                       hidden_size=12, embed_size=6, attention_size=10)


def _params(config, seed: int, eos_bias: float = 1.0) -> dict:
  params = helpers.random_params(seq2seq.init, config, seed=seed, scale=1.0)
  bias = params["decoder"]["output"]["bias"]
  params["decoder"]["output"]["bias"] = bias.at[EOS_ID].add(eos_bias)
  return params


def _src():
  return helpers.random_src(np.random.default_rng(0), SRC_LENGTHS, SRC_WIDTH)


def _ensemble(configs, beam_size, alpha=0.0):
  return jax.jit(lambda p, s, n: ensemble.beam_search(p, s, n, configs, MAX_LEN, beam_size,
                                                      alpha))


def test_mean_log_probs_is_the_log_of_the_mean_distribution():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((3, 4, 9)) * 3
  log_ps = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = np.log(np.exp(log_ps).mean(axis=0))
  np.testing.assert_allclose(ensemble.mean_log_probs(jnp.asarray(log_ps, jnp.float32)),
                             expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beam_size, alpha", [(1, 0.0), (3, 0.6)])
def test_one_model_and_twice_the_same_model_equal_that_model(beam_size, alpha):
  params = _params(A, seed=0)
  src, src_len = _src()
  single = jax.device_get(jax.jit(lambda p, s, n: beam.beam_search(
      p, s, n, A, MAX_LEN, beam_size, alpha))(params, src, src_len))
  for members in (1, 2):
    got = jax.device_get(_ensemble((A,) * members, beam_size, alpha)(
        (params,) * members, src, src_len))
    np.testing.assert_array_equal(got.tokens, single.tokens)
    np.testing.assert_array_equal(got.lengths, single.lengths)
    np.testing.assert_allclose(got.scores, single.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.weights, single.weights, atol=1e-5)


def _reference_greedy(params, configs, src, src_len):
  """Greedy search with the mean distribution, one sentence and one step at a time, each
  member's step run on its own (batch of one) and combined in NumPy."""
  banned = np.asarray(greedy_search.never_emit(configs[0].tgt_vocab_size))
  out = []
  for row in range(src.shape[0]):
    s, n = src[row:row + 1], src_len[row:row + 1]
    states = []
    for p, c in zip(params, configs):
      enc = encoder.encode(p["encoder"], s, n, c)
      states.append([decoder.initial_carry(p["decoder"], enc, c),
                     decoder.memory(p["decoder"], enc, c)])
    token, tokens, score = BOS_ID, [], 0.0
    while len(tokens) < MAX_LEN:  # the search's limit when none is given per sentence
      probs = []
      for st, p, c in zip(states, params, configs):
        st[0], log_p, _ = decoder.next_token_log_probs(
            p["decoder"], st[0], jnp.array([token], jnp.int32), st[1], c)
        probs.append(np.exp(np.asarray(log_p[0], np.float64)))
      log_mean = np.log(np.mean(probs, axis=0))
      token = int(np.argmax(log_mean + banned))
      score += log_mean[token]
      tokens.append(token)
      if token == EOS_ID:
        break
    out.append((tokens, score))
  return out


def test_greedy_ensemble_of_two_different_models_matches_the_reference():
  configs = (A, B)
  params = (_params(A, seed=3), _params(B, seed=4, eos_bias=0.0))
  src, src_len = _src()
  got = jax.device_get(_ensemble(configs, 1)(params, src, src_len))
  reference = _reference_greedy(params, configs, src, src_len)
  # The ensemble really differs from its members here (else the test would prove little).
  alone = [jax.device_get(_ensemble((c,), 1)((p,), src, src_len)).tokens
           for p, c in zip(params, configs)]
  assert not np.array_equal(alone[0], got.tokens) and not np.array_equal(alone[1], got.tokens)
  for row, (tokens, score) in enumerate(reference):
    m = int(got.lengths[row])
    assert list(got.tokens[row, :m]) == tokens
    assert np.all(got.tokens[row, m:] == PAD_ID)
    np.testing.assert_allclose(got.scores[row], score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.weights[row, :m, :int(src_len[row])].sum(-1), 1.0,
                               atol=1e-5)


def test_make_search_takes_a_tuple_of_configs_for_an_ensemble():
  configs = (A, B)
  params = (_params(A, seed=3), _params(B, seed=4, eos_bias=0.0))
  src, src_len = _src()
  got = jax.device_get(searches.make_search(configs, beam_size=3, alpha=1.0)(params, src, src_len))
  max_len = searches.max_output_len(SRC_WIDTH, 1.5, 10)
  limits = greedy_search.output_limits(jnp.asarray(src_len), 1.5, 10, max_len)
  direct = jax.device_get(jax.jit(lambda p, s, n, lim: ensemble.beam_search(
      p, s, n, configs, max_len, 3, 1.0, lim))(params, src, src_len, limits))
  np.testing.assert_array_equal(got.tokens, direct.tokens)
  np.testing.assert_allclose(got.scores, direct.scores, rtol=1e-6)


def test_members_with_other_vocabularies_are_refused():
  other = helpers.tiny_model(tgt_vocab_size=helpers.VOCAB + 1)
  with pytest.raises(ValueError, match="vocabulary sizes"):
    ensemble.check_members((A, other))
  with pytest.raises(ValueError, match="at least one"):
    ensemble.check_members(())
