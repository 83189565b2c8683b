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
