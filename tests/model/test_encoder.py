"""The masked bidirectional lax.scan encoder against per-example Python loops."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.model import cells, encoder

CONFIGS = [(cell, layers, bi) for cell in ("gru", "lstm") for layers in (1, 2)
           for bi in (True, False)] + [("gru-ln", 2, True), ("lstm-ln", 1, True)]
IDS = [f"{c}-L{l}-{'bi' if b else 'uni'}" for c, l, b in CONFIGS]
LENGTHS = [1, 4, 6, 3]
WIDTH = 6


@functools.lru_cache(maxsize=None)
def _encode_fn(config):
  return jax.jit(lambda p, s, n: encoder.encode(p, s, n, config))


def _setup(cell, layers, bi, seed=0):
  cell, _, norm = cell.partition("-")  # "gru-ln": a layer-normalised GRU
  config = helpers.tiny_model(cell=cell, encoder_layers=layers, bidirectional=bi, hidden_size=5,
                              embed_size=4, layer_norm=norm == "ln")
  params = helpers.random_params(encoder.init, config, seed)
  return config, params


def _numpy_encode(params, tokens, config):
  """One unpadded sequence: (states [n, A], final h [A], final c [A] or None).

  Forward reads t = 0..n-1, backward reads t = n-1..0; the final state joins the
  forward state after the last token and the backward state after the first.
  """
  p = helpers.to_np(params)
  x = p["embed"]["embedding"][tokens]  # [n, embed]
  n, H = len(tokens), config.hidden_size
  lstm = config.cell == "lstm"
  for i in range(config.encoder_layers):
    outs, finals = [], []
    directions = [("fwd", range(n))] + ([("bwd", range(n - 1, -1, -1))] if config.bidirectional else [])
    for name, order in directions:
      state = (np.zeros(H), np.zeros(H) if lstm else None)
      out = np.zeros((n, H))
      for t in order:
        state = helpers.cell_step(config.cell, p[f"layer_{i}"][name], state, x[t])
        out[t] = state[0]
      outs.append(out)
      finals.append(state)
    x = np.concatenate(outs, axis=-1)
  h = np.concatenate([f[0] for f in finals])
  c = np.concatenate([f[1] for f in finals]) if lstm else None
  return x, h, c


def _python_loop_encode(params, src, src_len, config):
  """Batched Python loop over the library's cell.step with per-row masking."""
  cell = cells.CELLS[config.cell]
  B, T = src.shape
  mask = np.arange(T)[None, :] < src_len[:, None]
  x = np.asarray(params["embed"]["embedding"])[src]
  for i in range(config.encoder_layers):
    layer = params[f"layer_{i}"]
    outs, finals = [], []
    for name in ["fwd", "bwd"] if config.bidirectional else ["fwd"]:
      inp = x.copy()
      if name == "bwd":  # reverse each row within its length by slicing
        for b in range(B):
          inp[b, :src_len[b]] = x[b, :src_len[b]][::-1]
      state = cell.zero_state(B, config.hidden_size)
      out = np.zeros((B, T, config.hidden_size), np.float32)
      for t in range(T):
        new = cell.step(layer[name], state, cells.project_inputs(layer[name], jnp.asarray(inp[:, t])))
        state = cells.masked_update(jnp.asarray(mask[:, t]), new, state)
        out[:, t] = np.where(mask[:, t, None], np.asarray(state.h), 0.0)
      if name == "bwd":
        for b in range(B):
          out[b, :src_len[b]] = out[b, :src_len[b]][::-1].copy()
      outs.append(out)
      finals.append(state)
    x = np.concatenate(outs, axis=-1)
  h = np.concatenate([np.asarray(f.h) for f in finals], axis=-1)
  c = np.concatenate([np.asarray(f.c) for f in finals], axis=-1) if cell.has_memory else None
  return x, h, c


@pytest.mark.parametrize("cell,layers,bi", CONFIGS, ids=IDS)
def test_scan_matches_per_example_numpy_reference(cell, layers, bi):
  config, params = _setup(cell, layers, bi)
  src, src_len = helpers.random_src(np.random.default_rng(0), LENGTHS, WIDTH)
  enc = _encode_fn(config)(params, src, src_len)
  A = config.encoder_output_size
  assert enc.states.shape == (len(LENGTHS), WIDTH, A)
  assert enc.final.h.shape == (len(LENGTHS), A)
  np.testing.assert_array_equal(enc.mask, np.arange(WIDTH)[None, :] < src_len[:, None])
  for b, n in enumerate(src_len):
    states, h, c = _numpy_encode(params, src[b, :n], config)
    np.testing.assert_allclose(np.asarray(enc.states[b, :n]), states, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(enc.states[b, n:]) == 0.0)
    np.testing.assert_allclose(np.asarray(enc.final.h[b]), h, rtol=1e-5, atol=1e-5)
    if config.cell == "lstm":
      np.testing.assert_allclose(np.asarray(enc.final.c[b]), c, rtol=1e-5, atol=1e-5)
    else:
      assert enc.final.c is None


@pytest.mark.parametrize("cell,layers,bi", [("gru", 2, True), ("lstm", 1, True), ("gru", 1, False)])
def test_scan_matches_masked_python_loop_over_cell_step(cell, layers, bi):
  config, params = _setup(cell, layers, bi, seed=3)
  src, src_len = helpers.random_src(np.random.default_rng(1), LENGTHS, WIDTH, junk=True)
  enc = _encode_fn(config)(params, src, src_len)
  states, h, c = _python_loop_encode(params, src, src_len, config)
  np.testing.assert_allclose(np.asarray(enc.states), states, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(enc.final.h), h, rtol=1e-5, atol=1e-6)
  if c is not None:
    np.testing.assert_allclose(np.asarray(enc.final.c), c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell,layers,bi", CONFIGS, ids=IDS)
def test_padding_content_and_width_do_not_matter(cell, layers, bi):
  config, params = _setup(cell, layers, bi, seed=7)
  rng = np.random.default_rng(2)
  src, src_len = helpers.random_src(rng, LENGTHS, WIDTH)  # PAD after EOS
  junk = src.copy()
  for b, n in enumerate(src_len):
    junk[b, n:] = rng.integers(3, helpers.VOCAB, size=WIDTH - n)
  wide = np.concatenate([junk, rng.integers(0, helpers.VOCAB, size=(len(src_len), 5))], axis=1
                        ).astype(np.int32)
  f = _encode_fn(config)
  ref = f(params, src, src_len)
  same_width = f(params, junk, src_len)
  # Same shapes, different junk: bitwise identical.
  np.testing.assert_array_equal(np.asarray(same_width.states), np.asarray(ref.states))
  np.testing.assert_array_equal(np.asarray(same_width.final.h), np.asarray(ref.final.h))
  wider = f(params, wide, src_len)
  np.testing.assert_allclose(np.asarray(wider.states[:, :WIDTH]), np.asarray(ref.states),
                             rtol=1e-6, atol=1e-6)
  assert np.all(np.asarray(wider.states[:, WIDTH:]) == 0.0)
  np.testing.assert_allclose(np.asarray(wider.final.h), np.asarray(ref.final.h), rtol=1e-6, atol=1e-6)
  if config.cell == "lstm":
    np.testing.assert_allclose(np.asarray(wider.final.c), np.asarray(ref.final.c), rtol=1e-6,
                               atol=1e-6)
  # One sequence alone (no padding at all) matches its row in the batch.
  b = 2
  n = int(src_len[b])
  alone = f(params, src[b:b + 1, :n], src_len[b:b + 1])
  np.testing.assert_allclose(np.asarray(alone.states[0]), np.asarray(ref.states[b, :n]),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(alone.final.h[0]), np.asarray(ref.final.h[b]),
                             rtol=1e-6, atol=1e-6)


def test_reverse_padded():
  rng = np.random.default_rng(0)
  lengths = np.array([1, 3, 5, 4], np.int32)
  for shape in [(4, 5), (4, 5, 2)]:
    x = rng.normal(size=shape).astype(np.float32)
    r = np.asarray(encoder.reverse_padded(jnp.asarray(x), jnp.asarray(lengths)))
    for b, n in enumerate(lengths):
      np.testing.assert_array_equal(r[b, :n], x[b, :n][::-1])
      np.testing.assert_array_equal(r[b, n:], x[b, n:])  # padding stays in place
    back = encoder.reverse_padded(jnp.asarray(r), jnp.asarray(lengths))
    np.testing.assert_array_equal(np.asarray(back), x)


def test_init_structure():
  config = helpers.tiny_model(encoder_layers=2, bidirectional=True, hidden_size=5, embed_size=4)
  p = jax.eval_shape(lambda: encoder.init(jax.random.key(0), config))
  assert set(p) == {"embed", "layer_0", "layer_1"}
  assert set(p["layer_0"]) == {"fwd", "bwd"}
  assert p["layer_0"]["fwd"]["input"]["kernel"].shape == (4, 15)
  assert p["layer_1"]["fwd"]["input"]["kernel"].shape == (10, 15)  # reads both directions
  uni = jax.eval_shape(lambda: encoder.init(jax.random.key(0), helpers.tiny_model(bidirectional=False)))
  assert set(uni["layer_0"]) == {"fwd"}


def test_dropout_only_with_a_key():
  _, params = _setup("gru", 1, True)
  config = helpers.tiny_model(cell="gru", encoder_layers=1, bidirectional=True, hidden_size=5,
                              embed_size=4, dropout=0.5)
  src, src_len = helpers.random_src(np.random.default_rng(0), LENGTHS, WIDTH)
  a = _encode_fn(config)(params, src, src_len)  # no key: evaluation
  no_dropout = _encode_fn(dataclasses.replace(config, dropout=0.0))(params, src, src_len)
  c = jax.jit(lambda p, s, n, k: encoder.encode(p, s, n, config, k))(
      params, src, src_len, jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(a.states), np.asarray(no_dropout.states))
  assert not np.allclose(np.asarray(a.states), np.asarray(c.states))
  assert np.all(np.asarray(c.states)[~np.asarray(c.mask)] == 0.0)
