"""The whole model: forward = encode then teacher-forced decode."""

from __future__ import annotations

import jax
import numpy as np

import helpers
from attn_jax.model import decoder, encoder, seq2seq


def test_forward_is_encode_then_decode(rng):
  config = helpers.tiny_model()
  params = helpers.random_params(seq2seq.init, config)
  assert set(params) == {"encoder", "decoder"}
  batch = helpers.random_batch(rng, [3, 5], [2, 4], 5, 4)
  logits, weights = seq2seq.forward(params, batch, config)
  enc = encoder.encode(params["encoder"], batch.src, batch.src_len, config)
  outs, ref_weights = decoder.teacher_forced_outputs(params["decoder"], enc, batch.tgt_in, config)
  ref_logits = decoder.logits(params["decoder"], outs)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(ref_logits))
  np.testing.assert_array_equal(np.asarray(weights), np.asarray(ref_weights))
  assert seq2seq.count_params(params) == sum(np.size(x) for x in jax.tree.leaves(params))


def test_head_weights_along_a_decoded_output_average_to_the_search_weights():
  from attn_jax.decode import greedy_search  # pylint: disable=g-import-not-at-top
  config = helpers.tiny_model(attention="multihead_scaled_dot", num_heads=2)
  params = helpers.random_params(seq2seq.init, config, seed=3, scale=1.0)
  src, src_len = helpers.random_src(np.random.default_rng(3), [5], 5)
  hyp = jax.device_get(greedy_search.greedy(params, src, src_len, config, 6))
  n = int(hyp.lengths[0])
  heads = seq2seq.head_weights(params, src[0], hyp.tokens[0, :n], config)
  assert heads.shape == (n, 2, 5)
  np.testing.assert_allclose(heads.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(heads.mean(1), hyp.weights[0, :n], atol=1e-5)
  assert not np.allclose(heads[:, 0], heads[:, 1])
