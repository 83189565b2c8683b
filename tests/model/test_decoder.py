"""The attentional decoder: scan vs step loop, a NumPy reference, source padding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.model import decoder, encoder, layers, seq2seq

SRC_LENGTHS = [3, 6, 1, 4]
SRC_WIDTH, TGT_WIDTH = 6, 5

CASES = (
    [("gru", "additive", q, f, True) for q in ("previous", "current") for f in (True, False)]
    + [("gru", v, "current", True, True) for v in ("dot", "scaled_dot", "general", "none")]
    + [("gru", "none", "previous", True, True), ("gru", "dot", "previous", False, False),
       ("lstm", "general", "previous", True, True), ("lstm", "additive", "current", True, False)]
    + [("gru", v, "current", True, True) for v in ("location", "local_m_general", "local_p_dot")]
    + [("gru", "local_p_additive", "previous", True, True)]
    + [("gru-ln", "additive", "current", True, True), ("lstm-ln", "dot", "previous", True, True)]
    + [("gru", "sparsemax_general", "current", True, True),
       ("lstm", "entmax15_additive", "previous", True, True)]
    + [("gru", "multihead_additive", "current", True, True),
       ("gru", "multihead_scaled_dot", "previous", True, False)]
    + [("gru", "coverage_additive", "current", True, True),
       ("lstm", "coverage_additive", "previous", False, False),
       ("gru", "monotonic", "previous", True, True),
       ("gru", "monotonic", "current", False, True), ("lstm", "mocha", "current", True, True)]
)
IDS = [f"{c}-{v}-{q}-{'feed' if f else 'nofeed'}-{'bi' if b else 'uni'}" for c, v, q, f, b in CASES]


def _config(cell, variant, query, feeding, bi):
  cell, _, norm = cell.partition("-")  # "gru-ln": a layer-normalised GRU
  return helpers.tiny_model(cell=cell, attention=variant, query=query, input_feeding=feeding,
                            layer_norm=norm == "ln",
                            bidirectional=bi, hidden_size=6, embed_size=5,
                            attention_size=8 if variant.startswith("multihead") else 7,
                            window=2 if variant == "mocha" else 1, location_positions=5,
                            num_heads=2 if variant.startswith("multihead") else 4)


def _teacher_forced_logits(params, enc, tgt_in, config):
  """Logits [batch, tgt_len, vocab] and weights of the teacher-forced scan."""
  outs, weights = decoder.teacher_forced_outputs(params, enc, tgt_in, config)
  return decoder.logits(params, outs), weights


@functools.lru_cache(maxsize=None)
def _fns(config):
  enc = jax.jit(lambda p, s, n: encoder.encode(p, s, n, config))
  tf = jax.jit(lambda p, e, t: _teacher_forced_logits(p, e, t, config))
  step = jax.jit(lambda p, c, e, ep, m: decoder.step(p, c, e, ep, m, config))
  return enc, tf, step


def _inputs(config, seed=0):
  params = helpers.random_params(seq2seq.init, config, seed)
  rng = np.random.default_rng(seed)
  batch = helpers.random_batch(rng, SRC_LENGTHS, [2, 5, 1, 4], SRC_WIDTH, TGT_WIDTH)
  return params, batch


def _loop(params, enc, tgt_in, config, step):
  """A Python loop over decoder.step: logits [B, T, V], weights [B, T, S]."""
  mem = decoder.memory(params, enc, config)
  carry = decoder.initial_carry(params, enc, config)
  all_logits, all_weights = [], []
  for t in range(tgt_in.shape[1]):
    emb = layers.embed(params["embed"], jnp.asarray(tgt_in[:, t]))
    carry, out, weights = step(params, carry, emb, decoder.project_embeddings(params, emb), mem)
    all_logits.append(decoder.logits(params, out))
    all_weights.append(weights)
  return np.stack(all_logits, 1), np.stack(all_weights, 1)


def _numpy_decoder(p, states, final_h, final_c, mask, tgt_in, config):
  """The decoder of one example from the equations in decoder.py's docstring.

  previous (Bahdanau): c_t = attend(s_{t-1}); s_t = cell([E y; c_t; feed], s_{t-1});
    v_t = tanh(W_r [s_t; c_t; E y] + b); feed = c_t.
  current (Luong): s_t = cell([E y; feed], s_{t-1}); c_t = attend(s_t);
    v_t = tanh(W_c [c_t; s_t] + b); feed = v_t.
  Initial state s_0 = tanh(W_s h_N + b) (and the same for the LSTM memory).
  """
  dense = lambda d, x: x @ d["kernel"] + d.get("bias", 0.0)
  h = np.tanh(dense(p["bridge"], final_h))
  c = np.tanh(dense(p["bridge_c"], final_c)) if config.cell == "lstm" else None
  feed = np.zeros(config.hidden_size if config.query == "current" else states.shape[-1])
  logits, weights = [], []
  state = helpers.initial_state(config.attention, mask)
  for t, y in enumerate(tgt_in):
    attend = lambda q, t=t: helpers.attend_step(config.attention, p["attention"], q, states,
                                                final_h, mask, t, config.window, state)
    e = p["embed"]["embedding"][y]
    if config.query == "previous":
      ctx, w, state = attend(h)
      x = np.concatenate([e, ctx] + ([feed] if config.input_feeding else []))
      h, c = helpers.cell_step(config.cell, p["cell"], (h, c), x)
      v = np.tanh(dense(p["readout"], np.concatenate([h, ctx, e])))
      feed = ctx
    else:
      x = np.concatenate([e] + ([feed] if config.input_feeding else []))
      h, c = helpers.cell_step(config.cell, p["cell"], (h, c), x)
      ctx, w, state = attend(h)
      v = np.tanh(dense(p["readout"], np.concatenate([ctx, h])))
      feed = v
    logits.append(dense(p["output"], v))
    weights.append(w)
  return np.array(logits), np.array(weights)


@pytest.mark.parametrize("cell,variant,query,feeding,bi", CASES, ids=IDS)
def test_scan_equals_step_loop_and_numpy_reference(cell, variant, query, feeding, bi):
  config = _config(cell, variant, query, feeding, bi)
  params, batch = _inputs(config)
  enc_fn, tf_fn, step_fn = _fns(config)
  enc = enc_fn(params["encoder"], batch.src, batch.src_len)
  logits, weights = tf_fn(params["decoder"], enc, batch.tgt_in)
  B = len(SRC_LENGTHS)
  assert logits.shape == (B, TGT_WIDTH, config.tgt_vocab_size)
  assert weights.shape == (B, TGT_WIDTH, SRC_WIDTH)

  loop_logits, loop_weights = _loop(params["decoder"], enc, batch.tgt_in, config, step_fn)
  np.testing.assert_allclose(np.asarray(logits), loop_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(weights), loop_weights, rtol=1e-5, atol=1e-6)

  p = helpers.to_np(params["decoder"])
  states, final_h = np.asarray(enc.states, np.float64), np.asarray(enc.final.h, np.float64)
  final_c = None if enc.final.c is None else np.asarray(enc.final.c, np.float64)
  mask = np.asarray(enc.mask)
  for b in range(B):
    ref_logits, ref_weights = _numpy_decoder(
        p, states[b], final_h[b], None if final_c is None else final_c[b], mask[b],
        batch.tgt_in[b], config)
    np.testing.assert_allclose(np.asarray(logits[b]), ref_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(weights[b]), ref_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("variant,query", [("additive", "previous"), ("dot", "current"),
                                           ("general", "current")])
def test_source_padding_changes_no_logits(variant, query):
  config = _config("gru", variant, query, True, True)
  params, batch = _inputs(config, seed=1)
  fwd = jax.jit(lambda p, b: seq2seq.forward(p, b, config))
  logits, weights = fwd(params, batch)
  mask = np.arange(SRC_WIDTH)[None, None, :] < batch.src_len[:, None, None]
  w = np.asarray(weights)
  assert np.all(w[np.broadcast_to(~mask, w.shape)] == 0.0)
  np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)

  rng = np.random.default_rng(3)
  extra = rng.integers(0, helpers.VOCAB, size=(len(SRC_LENGTHS), 4)).astype(np.int32)
  junk_src = batch.src.copy()
  for b, n in enumerate(batch.src_len):
    junk_src[b, n:] = rng.integers(3, helpers.VOCAB, size=SRC_WIDTH - n)
  wide = batch._replace(src=np.concatenate([junk_src, extra], axis=1))
  logits2, weights2 = fwd(params, wide)
  np.testing.assert_allclose(np.asarray(logits2), np.asarray(logits), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(weights2[..., :SRC_WIDTH]), w, rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(weights2[..., SRC_WIDTH:]) == 0.0)


def test_target_positions_are_causal():
  """Logits at t depend only on tgt_in[:t+1]: changing later inputs changes nothing before."""
  config = _config("gru", "additive", "current", True, True)
  params, batch = _inputs(config, seed=2)
  fwd = jax.jit(lambda p, b: seq2seq.forward(p, b, config))
  logits, _ = fwd(params, batch)
  changed = batch.tgt_in.copy()
  changed[:, 3:] = (changed[:, 3:] + 1) % helpers.VOCAB
  logits2, _ = fwd(params, batch._replace(tgt_in=changed))
  np.testing.assert_array_equal(np.asarray(logits2[:, :3]), np.asarray(logits[:, :3]))
  assert not np.allclose(np.asarray(logits2[:, 3:]), np.asarray(logits[:, 3:]))


def test_init_shapes():
  config = _config("lstm", "additive", "previous", True, True)
  p = jax.eval_shape(lambda: decoder.init(jax.random.key(0), config))
  A, H, E = 12, 6, 5
  assert p["cell"]["input"]["kernel"].shape == (E + A + A, 4 * H)  # [E y; c; feed = c]
  assert p["readout"]["kernel"].shape == (H + A + E, H)
  assert p["bridge"]["kernel"].shape == (A, H) and p["bridge_c"]["kernel"].shape == (A, H)
  cur = jax.eval_shape(lambda: decoder.init(jax.random.key(0),
                                            _config("gru", "dot", "current", True, False)))
  assert cur["cell"]["input"]["kernel"].shape == (E + H, 3 * H)  # [E y; h~]
  assert cur["readout"]["kernel"].shape == (H + H, H)
  assert "bridge_c" not in cur
  assert decoder.feed_size(_config("gru", "dot", "current", False, True)) == 0
