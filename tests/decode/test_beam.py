"""Beam search: beam 1 == greedy, a toy model where the beam beats greedy, batching, output conventions."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.config import BOS_ID, EOS_ID, PAD_ID
from attn_jax.decode import beam, greedy_search, searches
from attn_jax.model import attention, decoder, seq2seq

MAX_LEN = 7
SRC_LENGTHS = [1, 3, 6, 2, 5, 4, 6, 3]
SRC_WIDTH = 6
CONFIGS = {
    "gru-additive-current": helpers.tiny_model(attention="additive", query="current"),
    "lstm-dot-previous": helpers.tiny_model(cell="lstm", attention="dot", query="previous",
                                            input_feeding=False),
    "gru-none-current": helpers.tiny_model(attention="none"),
    "gru-local_p_general-current": helpers.tiny_model(attention="local_p_general", window=2),
    "gru-entmax15_additive-current": helpers.tiny_model(attention="entmax15_additive"),
    "lstm-sparsemax_dot-previous": helpers.tiny_model(cell="lstm", attention="sparsemax_dot",
                                                      query="previous"),
    "gru-multihead_additive-current": helpers.tiny_model(attention="multihead_additive",
                                                         num_heads=2),
    "gru-coverage_additive-current": helpers.tiny_model(attention="coverage_additive"),
    "lstm-monotonic-previous": helpers.tiny_model(cell="lstm", attention="monotonic",
                                                  query="previous"),
    "gru-monotonic-current": helpers.tiny_model(attention="monotonic"),
    "gru-mocha-previous": helpers.tiny_model(attention="mocha", query="previous", window=2),
    "gru-additive-bfloat16": helpers.tiny_model(attention="additive", matmul_dtype="bfloat16",
                                                tie_embeddings=True, embed_size=16,
                                                hidden_size=16),
}


@functools.lru_cache(maxsize=None)
def _fns(config, beam_size, alpha=0.0):
  greedy = jax.jit(lambda p, s, n: greedy_search.greedy(p, s, n, config, MAX_LEN))
  beamed = jax.jit(lambda p, s, n: beam.beam_search(p, s, n, config, MAX_LEN, beam_size, alpha))
  return greedy, beamed


def _params(config, eos_bias: float):
  params = helpers.random_params(seq2seq.init, config, seed=0, scale=1.0)
  bias = params["decoder"]["output"]["bias"]
  params["decoder"]["output"]["bias"] = bias.at[EOS_ID].add(eos_bias)
  return params


@pytest.mark.parametrize("name, eos_bias", list(itertools.product(CONFIGS, [0.0, 2.0])))
def test_beam_of_one_is_greedy(name, eos_bias):
  config = CONFIGS[name]
  params = _params(config, eos_bias)
  src, src_len = helpers.random_src(np.random.default_rng(0), SRC_LENGTHS, SRC_WIDTH)
  greedy, beamed = _fns(config, 1)
  g, b = jax.device_get((greedy(params, src, src_len), beamed(params, src, src_len)))
  np.testing.assert_array_equal(b.tokens, g.tokens)
  np.testing.assert_array_equal(b.lengths, g.lengths)
  np.testing.assert_allclose(b.scores, g.scores, rtol=1e-5, atol=1e-5)
  # float32 sums fused differently by the two programs: 1.5e-6 apart on an H100.
  np.testing.assert_allclose(b.weights, g.weights, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_wider_beam_scores_at_least_greedy_here_and_keeps_conventions(name):
  """Output conventions of a 4-wide beam. (Beam search is not guaranteed to beat greedy; on
  these fixed inputs it does, which a search that lost hypotheses would not.)"""
  config = CONFIGS[name]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(1), SRC_LENGTHS, SRC_WIDTH)
  g = jax.device_get(_fns(config, 1)[1](params, src, src_len))
  b = jax.device_get(_fns(config, 4)[1](params, src, src_len))
  assert (b.scores >= g.scores - 1e-5).all()
  for i, n in enumerate(b.lengths):
    assert 1 <= n <= MAX_LEN
    assert (b.tokens[i, n:] == PAD_ID).all() and (b.weights[i, n:] == 0).all()
    assert not np.isin(b.tokens[i, :n], [PAD_ID, BOS_ID]).any()
    if n < MAX_LEN:
      assert b.tokens[i, n - 1] == EOS_ID and (b.tokens[i, :n - 1] != EOS_ID).all()
    if config.attention.startswith("local_p_"):  # eq. 10's Gaussian lowers the weights
      assert (b.weights[i, :n].sum(-1) <= 1.0 + 1e-5).all()
    elif config.attention in ("monotonic", "mocha"):  # hard: a chunk, or none past the end
      sums = b.weights[i, :n].sum(-1)
      assert np.all((np.abs(sums - 1.0) < 1e-5) | (sums == 0.0))
    elif attention.VARIANTS[config.attention].has_weights:
      np.testing.assert_allclose(b.weights[i, :n, :src_len[i]].sum(-1), 1.0, rtol=1e-5)


def test_scores_are_the_model_log_probability():
  """The returned score is log P(tokens | src) under teacher forcing (to float tolerance)."""
  config = CONFIGS["gru-additive-current"]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(2), SRC_LENGTHS, SRC_WIDTH)
  b = jax.device_get(_fns(config, 3)[1](params, src, src_len))
  tgt_in = np.concatenate([np.full((len(src), 1), BOS_ID), b.tokens[:, :-1]], axis=1)
  batch = helpers.random_batch(np.random.default_rng(0), SRC_LENGTHS, [1] * len(src),
                               SRC_WIDTH, MAX_LEN)._replace(
      src=src, src_len=src_len, tgt_in=tgt_in.astype(np.int32))
  logits, _ = seq2seq.forward(params, jax.tree.map(jnp.asarray, batch), config)
  log_p = np.asarray(jax.nn.log_softmax(logits))
  for i, n in enumerate(b.lengths):
    expected = sum(log_p[i, t, b.tokens[i, t]] for t in range(n))
    np.testing.assert_allclose(b.scores[i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["gru-coverage_additive-current", "lstm-monotonic-previous",
                                  "gru-monotonic-current", "gru-mocha-previous"])
def test_scores_of_a_carried_attention_state_follow_their_hypothesis(name):
  """The score of each returned hypothesis is its log-probability recomputed one search step
  at a time for that hypothesis alone, so the beam reordered the attention state (coverage,
  the monotonic position) with the hypotheses it belongs to."""
  config = CONFIGS[name]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(2), SRC_LENGTHS, SRC_WIDTH)
  b = jax.device_get(_fns(config, 3)[1](params, src, src_len))
  step = jax.jit(lambda p, c, y, m: decoder.next_token_log_probs(p["decoder"], c, y, m, config))
  carry, mem = beam.start(params, jnp.asarray(src), jnp.asarray(src_len), config)
  tokens = jnp.full((len(src),), BOS_ID, jnp.int32)
  total = np.zeros(len(src))
  for t in range(MAX_LEN):
    carry, log_p, weights = step(params, carry, tokens, mem)
    tokens = jnp.asarray(b.tokens[:, t])
    live = t < b.lengths
    total += np.where(live, np.asarray(log_p)[np.arange(len(src)), b.tokens[:, t]], 0.0)
    np.testing.assert_allclose(np.asarray(weights)[live], b.weights[live, t], atol=1e-5)
  np.testing.assert_allclose(b.scores, total, rtol=1e-4, atol=1e-4)


def test_padded_batch_equals_one_at_a_time():
  config = CONFIGS["gru-additive-current"]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(3), SRC_LENGTHS, SRC_WIDTH)
  beamed = _fns(config, 3)[1]  # jitted: compiles once per source length below
  batched = jax.device_get(beamed(params, src, src_len))
  for i, n in enumerate(src_len):
    single_src = src[i:i + 1, :n]  # no padding at all
    one = jax.device_get(beamed(params, single_src, src_len[i:i + 1]))
    np.testing.assert_array_equal(one.tokens[0], batched.tokens[i])
    np.testing.assert_allclose(one.scores[0], batched.scores[i], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one.weights[0], batched.weights[i, :, :n], atol=1e-6)


@pytest.mark.parametrize("name, beam_size", [("gru-additive-current", 3),
                                             ("lstm-dot-previous", 2),
                                             ("gru-local_p_general-current", 1)])
def test_streaming_through_fewer_slots_gives_the_same_hypotheses(name, beam_size):
  """With fewer slots than sentences, each slot takes the next sentence when its own
  is done: every sentence gets the hypothesis it gets with all of them at once."""
  config = CONFIGS[name]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(6), SRC_LENGTHS, SRC_WIDTH)
  limits = jnp.asarray(greedy_search.output_limits(jnp.asarray(src_len), 1.0, 1, MAX_LEN))
  run = lambda slots: jax.device_get(jax.jit(lambda p, s, n: beam.beam_search(
      p, s, n, config, MAX_LEN, beam_size, 0.6, limits, slots=slots))(params, src, src_len))
  together = run(None)
  assert len(set(together.lengths.tolist())) > 1  # sentences finish at different steps
  for slots in (1, 3):
    streamed = run(slots)
    np.testing.assert_array_equal(streamed.tokens, together.tokens)
    np.testing.assert_array_equal(streamed.lengths, together.lengths)
    np.testing.assert_allclose(streamed.scores, together.scores, rtol=1e-5, atol=1e-5)
    # other batch shapes round differently (seen on an AVX2 host: 1.5e-6 apart)
    np.testing.assert_allclose(streamed.weights, together.weights, atol=1e-5)


def test_rows_from_count_on_are_not_decoded():
  config = CONFIGS["gru-additive-current"]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(7), SRC_LENGTHS, SRC_WIDTH)
  full = jax.device_get(_fns(config, 2)[1](params, src, src_len))
  part = jax.device_get(jax.jit(lambda p, s, n, c: beam.beam_search(
      p, s, n, config, MAX_LEN, 2, slots=3, count=c))(params, src, src_len, jnp.int32(5)))
  np.testing.assert_array_equal(part.tokens[:5], full.tokens[:5])
  np.testing.assert_allclose(part.scores[:5], full.scores[:5], rtol=1e-5, atol=1e-5)
  assert (part.lengths[5:] == 0).all() and (part.tokens[5:] == PAD_ID).all()
  assert (part.scores[5:] == 0).all() and (part.weights[5:] == 0).all()


# A hand-checkable toy: vocabulary {PAD, BOS, EOS, a, b}; the carry is the last token.
#   after BOS: a 0.6, b 0.4;  after a: a 0.5, b 0.5 (never EOS);  after b: EOS 1.0.
# Greedy: a, then a or b at 0.5 ... best it can do is a b EOS = 0.6*0.5*1 = 0.30.
# Beam 2 finds b EOS = 0.4.
A, B = 3, 4
_TABLE = np.full((5, 5), 1e-9)
_TABLE[BOS_ID, [A, B]] = [0.6, 0.4]
_TABLE[A, [A, B]] = [0.5 + 1e-6, 0.5]  # greedy prefers a, never ends on its own
_TABLE[B, EOS_ID] = 1.0


def _toy_step(last, carry, context):
  del carry, context
  log_p = jnp.log(jnp.asarray(_TABLE / _TABLE.sum(1, keepdims=True), jnp.float32))[last]
  log_p = log_p.at[:, jnp.array([PAD_ID, BOS_ID])].set(-jnp.inf)
  return log_p, last, jnp.ones((last.shape[0], 1), jnp.float32)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_toy_model_beam_finds_the_sequence_greedy_misses(alpha):
  def run(k):
    return jax.device_get(beam.search(_toy_step, jnp.zeros((1,), jnp.int32), (), 1, 6, k, alpha))
  greedy_like, wide = run(1), run(2)
  assert greedy_like.tokens[0, 0] == A  # greedy takes the 0.6 branch
  assert list(wide.tokens[0, :2]) == [B, EOS_ID] and wide.lengths[0] == 2
  np.testing.assert_allclose(wide.scores[0], np.log(0.4), rtol=1e-4)
  assert wide.scores[0] > greedy_like.scores[0]


def test_search_continues_after_the_top_hypothesis_ends():
  """The first hypothesis to finish is not the answer when a longer one scores higher."""
  table = np.full((5, 5), 1e-9)
  table[BOS_ID, [EOS_ID, A]] = [0.55, 0.45]  # ending now: 0.55
  table[A, EOS_ID] = 1.0  # a EOS: 0.45 - worse; but see alpha below
  def step(last, carry, context):
    log_p = jnp.log(jnp.asarray(table / table.sum(1, keepdims=True), jnp.float32))[last]
    return log_p.at[:, jnp.array([PAD_ID, BOS_ID])].set(-jnp.inf), carry, jnp.ones((last.shape[0], 1))
  # With a strong length penalty the longer hypothesis wins: log 0.45 / lp(2) > log 0.55 / lp(1).
  alpha = 3.0
  assert np.log(0.45) / beam.length_penalty(2.0, alpha) > np.log(0.55) / beam.length_penalty(1.0, alpha)
  hyp = jax.device_get(beam.search(step, jnp.zeros((1,), jnp.int32), (), 1, 5, 2, alpha))
  assert list(hyp.tokens[0, :2]) == [A, EOS_ID]


def test_output_limits_follow_the_source_length():
  src_len = jnp.array([1, 2, 5, 11])  # EOS included: 0, 1, 4, 10 words
  np.testing.assert_array_equal(greedy_search.output_limits(src_len, 1.5, 2, 12), [3, 5, 9, 12])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_per_sentence_limits_bound_greedy_and_beam_alike(name):
  config = CONFIGS[name]
  params = _params(config, -2.0)  # EOS unlikely: most outputs run into their limit
  src, src_len = helpers.random_src(np.random.default_rng(4), SRC_LENGTHS, SRC_WIDTH)
  limits = jnp.asarray(greedy_search.output_limits(jnp.asarray(src_len), 0.5, 1, MAX_LEN))
  g = jax.device_get(greedy_search.greedy(params, src, src_len, config, MAX_LEN, limits))
  b1 = jax.device_get(beam.beam_search(params, src, src_len, config, MAX_LEN, 1, limits=limits))
  b3 = jax.device_get(beam.beam_search(params, src, src_len, config, MAX_LEN, 3, limits=limits))
  limits = np.asarray(limits)
  assert (limits < MAX_LEN).any()
  for hyp in (g, b1, b3):
    assert (hyp.lengths <= limits).all() and (hyp.lengths >= 1).all()
    for i, n in enumerate(hyp.lengths):
      assert (hyp.tokens[i, n:] == PAD_ID).all()
  np.testing.assert_array_equal(b1.tokens, g.tokens)
  np.testing.assert_allclose(b1.scores, g.scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_without_weights_the_same_hypotheses_and_no_weights(beam_size):
  """make_search(with_weights=False), single model and ensemble: the same tokens, lengths
  and scores as with the weights kept, and weights [batch, max_len, 0]."""
  config = CONFIGS["gru-additive-current"]
  params = _params(config, 1.0)
  src, src_len = helpers.random_src(np.random.default_rng(5), SRC_LENGTHS, SRC_WIDTH)
  for cfg, p in ((config, params), ((config, config), (params, _params(config, 0.0)))):
    kept, dropped = jax.device_get(tuple(
        searches.make_search(cfg, beam_size, 1.0, with_weights=w)(p, src, src_len)
        for w in (True, False)))
    np.testing.assert_array_equal(dropped.tokens, kept.tokens)
    np.testing.assert_array_equal(dropped.lengths, kept.lengths)
    np.testing.assert_allclose(dropped.scores, kept.scores, rtol=1e-6, atol=1e-6)
    assert kept.weights.shape == kept.tokens.shape + (SRC_WIDTH,)
    assert dropped.weights.shape == kept.tokens.shape + (0,)
