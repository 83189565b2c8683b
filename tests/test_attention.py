"""Attention variants against NumPy transcriptions of the papers' score functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax import attention

ALL = ("none", "dot", "scaled_dot", "general", "additive")
S, H, ATT = 7, 6, 5  # source positions, query size, additive inner size


def _setup(variant: str, key_size: int, seed: int = 0, lengths=(4,)):
  """Params and one example: query [H], states [S, A], summary [A], mask [S]."""
  params = attention.VARIANTS[variant].init(jax.random.key(seed), H, key_size, ATT)
  params = helpers.randomize(params, seed + 1, scale=0.7)
  rng = np.random.default_rng(seed)
  q = rng.normal(size=H).astype(np.float32)
  states = rng.normal(size=(S, key_size)).astype(np.float32)
  summary = rng.normal(size=key_size).astype(np.float32)
  mask = np.arange(S) < lengths[0]
  return params, q, states, summary, mask


def _run(variant: str, params, q, states, summary, mask):
  v = attention.VARIANTS[variant]
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))
  context, weights = v.attend(params, jnp.asarray(q), keys, jnp.asarray(states), jnp.asarray(mask))
  return np.asarray(context), np.asarray(weights)


def test_registry_names_every_variant():
  assert set(attention.VARIANTS) == set(ALL)
  assert not attention.VARIANTS["none"].has_weights
  assert all(attention.VARIANTS[v].has_weights for v in ALL if v != "none")


@pytest.mark.parametrize("key_size", [H, 2 * H], ids=["key=query", "key=2query"])
@pytest.mark.parametrize("variant", ALL)
def test_attend_matches_numpy_reference(variant, key_size):
  params, q, states, summary, mask = _setup(variant, key_size)
  context, weights = _run(variant, params, q, states, summary, mask)
  ref_c, ref_w = helpers.attend(variant, helpers.to_np(params), q.astype(np.float64),
                                states.astype(np.float64), summary.astype(np.float64), mask)
  np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(context, ref_c, rtol=1e-5, atol=1e-6)
  assert context.shape == (key_size,) and weights.shape == (S,)


@pytest.mark.parametrize("variant", [v for v in ALL if v != "none"])
def test_masking_weights_exactly_zero_and_normalised(variant):
  params, q, states, summary, mask = _setup(variant, H, lengths=(3,))
  # Junk with huge norm at the padded positions must not leak into the softmax.
  states[~mask] = 1e4
  context, weights = _run(variant, params, q, states, summary, mask)
  assert np.all(weights[~mask] == 0.0)
  assert np.all(weights[mask] > 0.0)
  assert abs(weights.sum() - 1.0) < 1e-6
  np.testing.assert_allclose(context, weights[mask] @ states[mask], rtol=1e-5, atol=1e-6)


def test_single_real_position_gets_all_the_weight():
  params, q, states, summary, _ = _setup("additive", H)
  mask = np.arange(S) < 1
  context, weights = _run("additive", params, q, states, summary, mask)
  np.testing.assert_array_equal(weights, np.eye(S)[0].astype(np.float32))
  np.testing.assert_allclose(context, states[0], rtol=1e-6)


def test_none_returns_the_summary_and_zero_weights():
  params, q, states, summary, mask = _setup("none", 2 * H)
  assert params == {}
  context, weights = _run("none", params, q, states, summary, mask)
  np.testing.assert_array_equal(context, summary)
  np.testing.assert_array_equal(weights, np.zeros(S, np.float32))
  # Whatever the query: a fixed context.
  context2, _ = _run("none", params, -3 * q, states, summary, mask)
  np.testing.assert_array_equal(context2, summary)


@pytest.mark.parametrize("variant", ["dot", "scaled_dot"])
def test_dot_with_equal_sizes_is_exactly_q_dot_k(variant):
  params = attention.VARIANTS[variant].init(jax.random.key(0), H, H, ATT)
  assert params == {}
  _, q, states, summary, mask = _setup(variant, H)
  _, weights = _run(variant, params, q, states, summary, mask)
  scores = states.astype(np.float64) @ q.astype(np.float64)
  if variant == "scaled_dot":
    scores /= np.sqrt(H)
  np.testing.assert_allclose(weights, helpers.masked_softmax(scores, mask), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["dot", "scaled_dot"])
def test_dot_with_other_key_size_projects_the_keys(variant):
  key_size = 2 * H
  params = attention.VARIANTS[variant].init(jax.random.key(0), H, key_size, ATT)
  assert set(params) == {"key_proj"}
  assert params["key_proj"]["kernel"].shape == (key_size, H)
  assert "bias" not in params["key_proj"]
  _, q, states, summary, mask = _setup(variant, key_size)
  keys = attention.VARIANTS[variant].prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))
  np.testing.assert_allclose(np.asarray(keys), states @ np.asarray(params["key_proj"]["kernel"]),
                             rtol=1e-5, atol=1e-6)


def test_general_and_additive_parameter_shapes():
  g = attention.VARIANTS["general"].init(jax.random.key(0), H, 2 * H, ATT)
  assert g["W"]["kernel"].shape == (2 * H, H) and "bias" not in g["W"]
  a = attention.VARIANTS["additive"].init(jax.random.key(0), H, 2 * H, ATT)
  assert a["query"]["kernel"].shape == (H, ATT) and "bias" not in a["query"]
  assert a["key"]["kernel"].shape == (2 * H, ATT) and a["key"]["bias"].shape == (ATT,)
  assert a["v"]["kernel"].shape == (ATT, 1) and "bias" not in a["v"]


def test_masked_softmax_direct():
  scores = jnp.array([3.0, -1e9, 1e9, 0.5, 2.0])
  mask = jnp.array([True, False, False, True, True])
  w = np.asarray(attention.masked_softmax(scores, mask))
  assert w[1] == 0.0 and w[2] == 0.0
  np.testing.assert_allclose(w, helpers.masked_softmax(np.asarray(scores, np.float64),
                                                       np.asarray(mask)), rtol=1e-6)


@pytest.mark.parametrize("variant", ALL)
def test_batched_equals_loop_over_examples(variant):
  B, A = 4, 2 * H
  params = helpers.randomize(attention.VARIANTS[variant].init(jax.random.key(3), H, A, ATT), 4)
  rng = np.random.default_rng(5)
  q = rng.normal(size=(B, H)).astype(np.float32)
  states = rng.normal(size=(B, S, A)).astype(np.float32)
  summary = rng.normal(size=(B, A)).astype(np.float32)
  mask = np.arange(S)[None, :] < np.array([1, 3, S, 5])[:, None]
  prepare, attend = attention.batched(attention.VARIANTS[variant])
  keys = prepare(params, states, summary)
  context, weights = attend(params, q, keys, states, mask)
  assert context.shape == (B, A) and weights.shape == (B, S)
  for b in range(B):
    c, w = _run(variant, params, q[b], states[b], summary[b], mask[b])
    np.testing.assert_allclose(np.asarray(context[b]), c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weights[b]), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", ALL)
def test_extra_padding_changes_nothing(variant):
  params, q, states, summary, mask = _setup(variant, 2 * H, lengths=(5,))
  context, weights = _run(variant, params, q, states, summary, mask)
  rng = np.random.default_rng(9)
  extra = 6
  junk = rng.normal(scale=50.0, size=(extra, states.shape[1])).astype(np.float32)
  states2 = np.concatenate([states, junk])
  mask2 = np.concatenate([mask, np.zeros(extra, bool)])
  context2, weights2 = _run(variant, params, q, states2, summary, mask2)
  np.testing.assert_allclose(context2, context, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(weights2[:S], weights, rtol=1e-6, atol=1e-7)
  assert np.all(weights2[S:] == 0.0)
