"""Attention variants against NumPy transcriptions of the papers' score functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax import config as config_lib
from attn_jax.model import additive, attention

GLOBAL = ("dot", "scaled_dot", "general", "additive", "location")
LOCAL = tuple(f"local_{kind}_{score}" for kind in "mp" for score in GLOBAL[:-1])
SPARSE = tuple(f"{name}_{score}" for name in ("sparsemax", "entmax15") for score in GLOBAL)
MULTIHEAD = ("multihead_additive", "multihead_scaled_dot")
RECURRENT = helpers.RECURRENT  # coverage_additive, monotonic, mocha
ALL = ("none",) + GLOBAL + LOCAL + SPARSE + MULTIHEAD + RECURRENT
S, H, ATT = 7, 6, 5  # source positions, query size, additive inner size
POSITIONS = 9  # location attention's W_a rows (> S)
T, WINDOW = 2, 2  # decoder step and local half-width D used by default


def _wide(variant: str) -> int:
  """A key size other than the query's where the variant allows one (dot needs A == H)."""
  return H if config_lib.needs_equal_sizes(variant) else 2 * H


def _sizes(key_size: int, positions: int = POSITIONS) -> attention.Sizes:
  return attention.Sizes(query=H, key=key_size, attention=ATT, positions=positions)


def _setup(variant: str, key_size: int, seed: int = 0, lengths=(4,)):
  """Params and one example: query [H], states [S, A], summary [A], mask [S]."""
  params = attention.VARIANTS[variant].init(jax.random.key(seed), _sizes(key_size))
  params = helpers.randomize(params, seed + 1, scale=0.7)
  rng = np.random.default_rng(seed)
  q = rng.normal(size=H).astype(np.float32)
  states = rng.normal(size=(S, key_size)).astype(np.float32)
  summary = rng.normal(size=key_size).astype(np.float32)
  mask = np.arange(S) < lengths[0]
  return params, q, states, summary, mask


def _run(variant: str, params, q, states, summary, mask, t=T, window=WINDOW):
  v = attention.VARIANTS[variant]
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))
  context, weights = v.attend(params, jnp.asarray(q), keys, jnp.asarray(states), jnp.asarray(mask),
                              jnp.int32(t), window)
  return np.asarray(context), np.asarray(weights)


def _reference(variant, params, q, states, summary, mask, t=T, window=WINDOW):
  return helpers.attend(variant, helpers.to_np(params), q.astype(np.float64),
                        states.astype(np.float64), summary.astype(np.float64), mask, t, window)


def test_registry_names_every_variant():
  assert set(attention.VARIANTS) == set(ALL)
  assert not attention.VARIANTS["none"].has_weights
  assert all(attention.VARIANTS[v].has_weights for v in ALL if v != "none")


@pytest.mark.parametrize("variant, key_size", [
    (v, a) for v in ALL for a in sorted({H, _wide(v)})])
def test_attend_matches_numpy_reference(variant, key_size):
  params, q, states, summary, mask = _setup(variant, key_size)
  context, weights = _run(variant, params, q, states, summary, mask)
  ref_c, ref_w = _reference(variant, params, q, states, summary, mask)
  np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(context, ref_c, rtol=1e-5, atol=1e-6)
  assert context.shape == (key_size,) and weights.shape == (S,)


@pytest.mark.parametrize("variant", GLOBAL)
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
  params = attention.VARIANTS[variant].init(jax.random.key(0), _sizes(H))
  assert params == {}
  _, q, states, summary, mask = _setup(variant, H)
  _, weights = _run(variant, params, q, states, summary, mask)
  scores = states.astype(np.float64) @ q.astype(np.float64)
  if variant == "scaled_dot":
    scores /= np.sqrt(H)
  np.testing.assert_allclose(weights, helpers.masked_softmax(scores, mask), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ALL)
def test_unequal_sizes_fail_exactly_for_the_variants_config_names(variant):
  """config.needs_equal_sizes (which ModelConfig checks) names exactly the variants whose
  init rejects keys of another size than the query."""
  init = lambda: attention.VARIANTS[variant].init(jax.random.key(0), _sizes(2 * H))
  if config_lib.needs_equal_sizes(variant):
    with pytest.raises(ValueError, match="equal query and key sizes"):
      init()
  else:
    init()


def test_general_and_additive_parameter_shapes():
  g = attention.VARIANTS["general"].init(jax.random.key(0), _sizes(2 * H))
  assert g["W"]["kernel"].shape == (2 * H, H) and "bias" not in g["W"]
  a = attention.VARIANTS["additive"].init(jax.random.key(0), _sizes(2 * H))
  assert a["query"]["kernel"].shape == (H, ATT) and "bias" not in a["query"]
  assert a["key"]["kernel"].shape == (2 * H, ATT) and a["key"]["bias"].shape == (ATT,)
  assert a["v"]["kernel"].shape == (ATT, 1) and "bias" not in a["v"]


def test_additive_score_gradient_matches_numpy_derivative():
  """The rematerialised tanh gives the derivative of v^T tanh(W q + U k_j + b) (eq. 6)."""
  params, q, states, summary, _ = _setup("additive", 2 * H)
  v = attention.VARIANTS["additive"]
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))  # [S, ATT]
  g = np.random.default_rng(5).normal(size=S)  # d loss / d score_j

  def loss(params, q, keys):
    return jnp.dot(additive.score(params, q, keys), jnp.asarray(g, jnp.float32))

  d_params, d_q, d_keys = jax.grad(loss, argnums=(0, 1, 2))(params, jnp.asarray(q), keys)
  w_q = np.asarray(params["query"]["kernel"], np.float64)  # [H, ATT]
  vec = np.asarray(params["v"]["kernel"], np.float64)[:, 0]  # [ATT]
  hidden = np.tanh(np.asarray(keys, np.float64) + q.astype(np.float64) @ w_q)  # [S, ATT]
  d_pre = g[:, None] * vec * (1.0 - hidden**2)  # [S, ATT]: d loss / d (W q + U k_j + b)
  np.testing.assert_allclose(d_keys, d_pre, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_q, w_q @ d_pre.sum(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_params["query"]["kernel"], np.outer(q, d_pre.sum(0)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_params["v"]["kernel"][:, 0], g @ hidden, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ALL)
def test_batched_equals_loop_over_examples(variant):
  B, A = 4, _wide(variant)
  params = helpers.randomize(attention.VARIANTS[variant].init(jax.random.key(3), _sizes(A)), 4)
  rng = np.random.default_rng(5)
  q = rng.normal(size=(B, H)).astype(np.float32)
  states = rng.normal(size=(B, S, A)).astype(np.float32)
  summary = rng.normal(size=(B, A)).astype(np.float32)
  mask = np.arange(S)[None, :] < np.array([1, 3, S, 5])[:, None]
  variant_fns = attention.VARIANTS[variant]
  prepare, attend = attention.batched(variant_fns, WINDOW)
  keys = prepare(params, states, summary)
  t = np.array([0, 2, 5, 9], np.int32)
  state = jax.vmap(lambda m: attention.initial_state(variant_fns, m))(mask)
  context, weights, _ = attend(params, q, keys, states, mask, t, state, np.zeros((B, 0)))
  assert context.shape == (B, A) and weights.shape == (B, S)
  for b in range(B):
    c, w = _run(variant, params, q[b], states[b], summary[b], mask[b], t=t[b])
    np.testing.assert_allclose(np.asarray(context[b]), c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weights[b]), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", ALL)
def test_extra_padding_changes_nothing(variant):
  params, q, states, summary, mask = _setup(variant, _wide(variant), lengths=(5,))
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


def test_location_scores_the_query_alone_and_zeroes_positions_past_its_width():
  params, q, states, summary, mask = _setup("location", H, lengths=(S,))
  _, weights = _run("location", params, q, states, summary, mask)
  _, other = _run("location", params, q, -states, summary, mask)  # the keys play no part
  np.testing.assert_array_equal(weights, other)
  narrow = attention.VARIANTS["location"].init(jax.random.key(0), _sizes(H, positions=4))
  _, weights = _run("location", narrow, q, states, summary, mask)
  assert np.all(weights[4:] == 0.0) and abs(weights[:4].sum() - 1.0) < 1e-6


@pytest.mark.parametrize("score", GLOBAL[:-1])
@pytest.mark.parametrize("t", [0, 3, 20])
def test_local_m_attends_within_the_window_around_t(score, t):
  params, q, states, summary, mask = _setup(f"local_m_{score}", H, lengths=(6,))
  _, weights = _run(f"local_m_{score}", params, q, states, summary, mask, t=t, window=1)
  centre = min(t, 5)  # past the source's end, the window stays on its last position
  inside = mask & (np.abs(np.arange(S) - centre) <= 1)
  assert np.all(weights[~inside] == 0.0) and np.all(weights[inside] > 0.0)
  assert abs(weights.sum() - 1.0) < 1e-6


@pytest.mark.parametrize("score", GLOBAL[:-1])
def test_local_p_gaussian_reweights_the_window(score):
  variant = f"local_p_{score}"
  params, q, states, summary, mask = _setup(variant, H, lengths=(6,))
  _, weights = _run(variant, params, q, states, summary, mask, window=2)
  ref_c, ref_w = _reference(variant, params, q, states, summary, mask, window=2)
  np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-7)
  assert np.all(weights[~mask] == 0.0)
  assert 0.0 < weights.sum() <= 1.0 + 1e-6  # the Gaussian only lowers the aligned weights
  nonzero = np.flatnonzero(weights)
  assert nonzero.max() - nonzero.min() <= 4  # within [p_t - D, p_t + D]


@pytest.mark.parametrize("variant", MULTIHEAD)
@pytest.mark.parametrize("heads", [2, 3])
def test_multihead_against_numpy_with_several_heads(variant, heads):
  sizes = attention.Sizes(query=H, key=12, attention=6, positions=POSITIONS, heads=heads)
  params = helpers.randomize(attention.VARIANTS[variant].init(jax.random.key(1), sizes), 2,
                             scale=0.7)
  rng = np.random.default_rng(heads)
  q = rng.normal(size=H).astype(np.float32)
  states = rng.normal(size=(S, 12)).astype(np.float32)
  mask = np.arange(S) < 5
  v = attention.VARIANTS[variant]
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(states[0]))
  context, weights = v.attend(params, jnp.asarray(q), keys, jnp.asarray(states),
                              jnp.asarray(mask), 0, WINDOW)
  np_params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  ref_context, ref_weights = helpers.multihead(variant[10:], np_params, q.astype(np.float64),
                                               states.astype(np.float64), mask)
  np.testing.assert_allclose(context, ref_context, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(weights, ref_weights, rtol=2e-5, atol=2e-7)
  assert context.shape == (12,) and (np.asarray(weights)[~mask] == 0).all()


# -- variants with a state: coverage (Tu et al. 2016; See et al. 2017), monotonic (Raffel
# et al. 2017) --------------------------------------------------------------------------

def _steps(variant, params, queries, states, summary, mask, search=False, noise=None):
  """step_fn over queries [T, H] from the initial state: contexts, weights, final state."""
  v = attention.VARIANTS[variant]
  fn = jax.jit(attention.step_fn(v, WINDOW, search))
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))
  state = attention.initial_state(v, jnp.asarray(mask))
  contexts, weights = [], []
  for t, q in enumerate(queries):
    n = jnp.zeros((0,)) if noise is None else jnp.asarray(noise[t])
    c, w, state = fn(params, jnp.asarray(q), keys, jnp.asarray(states), jnp.asarray(mask),
                     jnp.int32(t), state, n)
    contexts.append(np.asarray(c))
    weights.append(np.asarray(w))
  return np.array(contexts), np.array(weights), state


def _numpy_steps(variant, params, queries, states, summary, mask, search=False):
  p = helpers.to_np(params)
  state = helpers.initial_state(variant, mask)
  contexts, weights = [], []
  for t, q in enumerate(queries):
    c, w, state = helpers.attend_step(variant, p, q.astype(np.float64), states.astype(np.float64),
                                      summary, mask, t, WINDOW, state, search)
    contexts.append(c)
    weights.append(w)
  return np.array(contexts), np.array(weights), state


def _queries(steps=5, seed=7):
  return np.random.default_rng(seed).normal(size=(steps, H)).astype(np.float32)


@pytest.mark.parametrize("search", [False, True])
@pytest.mark.parametrize("variant", RECURRENT)
def test_recurrent_variants_over_several_steps_match_numpy(variant, search):
  params, _, states, summary, mask = _setup(variant, 2 * H, lengths=(5,))
  queries = _queries()
  c, w, state = _steps(variant, params, queries, states, summary, mask, search)
  ref_c, ref_w, ref_state = _numpy_steps(variant, params, queries, states, summary, mask, search)
  np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(c, ref_c, rtol=1e-5, atol=1e-6)
  assert np.all(w[:, ~mask] == 0.0)
  if variant == "coverage_additive":  # cov_T = the sum of every step's weights (eq. 10)
    np.testing.assert_allclose(np.asarray(state), w.sum(0), rtol=1e-6)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  elif search:
    assert int(state.position) == ref_state[1]


def test_coverage_changes_the_scores_only_through_w_c():
  """With w_c = 0 coverage attention is additive attention at every step."""
  params, _, states, summary, mask = _setup("coverage_additive", 2 * H)
  params = {**params, "coverage": {"kernel": jnp.zeros_like(params["coverage"]["kernel"])}}
  additive = {k: v for k, v in params.items() if k != "coverage"}
  queries = _queries(3)
  _, w, _ = _steps("coverage_additive", params, queries, states, summary, mask)
  for t, q in enumerate(queries):
    _, ref = _run("additive", additive, q, states, summary, mask)
    np.testing.assert_allclose(w[t], ref, rtol=1e-6)
  params["coverage"]["kernel"] = jnp.full_like(params["coverage"]["kernel"], 3.0)
  _, moved, _ = _steps("coverage_additive", params, queries, states, summary, mask)
  np.testing.assert_array_equal(moved[0], w[0])  # cov_0 = 0
  assert not np.allclose(moved[1:], w[1:])


def test_expected_alignment_parallel_form_equals_eq9_with_noise():
  params, _, states, summary, mask = _setup("monotonic", 2 * H, lengths=(6,))
  queries = _queries(4, seed=3)
  noise = np.random.default_rng(4).normal(size=(4, S)).astype(np.float32)
  _, w, _ = _steps("monotonic", params, queries, states, summary, mask, noise=noise)
  p = helpers.to_np(params)
  previous = np.eye(S)[0]
  for t, q in enumerate(queries):
    _, ref = helpers.monotonic_expected(p, q.astype(np.float64), states.astype(np.float64),
                                        mask, previous, noise[t])
    np.testing.assert_allclose(w[t], ref, rtol=1e-5, atol=1e-7)
    previous = ref
  assert np.all(w.sum(-1) <= 1.0 + 1e-6) and np.all(w[:, ~mask] == 0.0)


def test_hard_monotonic_is_the_limit_of_the_expected_alignment():
  """With energies far from 0 (p in {0, 1}) the expected alignment is the hard one."""
  params, _, states, summary, mask = _setup("monotonic", 2 * H, lengths=(6,))
  params = {**params, "g": params["g"] * 0 + 200.0, "r": params["r"] * 0}
  queries = _queries(6, seed=11)
  _, soft, _ = _steps("monotonic", params, queries, states, summary, mask)
  _, hard, state = _steps("monotonic", params, queries, states, summary, mask, search=True)
  np.testing.assert_allclose(soft, hard, atol=1e-4)
  positions = [int(np.argmax(w)) for w in hard if w.sum() > 0]
  assert positions == sorted(positions)  # never moves back


def test_hard_monotonic_past_the_end_gives_zero_context_from_then_on():
  params, _, states, summary, mask = _setup("monotonic", 2 * H, lengths=(4,))
  params = {**params, "r": params["r"] * 0 - 1e3}  # never stops
  c, w, state = _steps("monotonic", params, _queries(3), states, summary, mask, search=True)
  assert np.all(c == 0.0) and np.all(w == 0.0) and int(state.position) == 4


@pytest.mark.parametrize("width", [1, 3])
def test_mocha_of_width_one_is_monotonic_and_its_chunks_sum_like_alpha(width):
  """w = 1: each chunk is its end alone, beta = alpha; any w: beta sums to sum(alpha)
  (each alpha_k is spread over its chunk's softmax)."""
  params, _, states, summary, mask = _setup("mocha", 2 * H, lengths=(6,))
  queries = _queries(4, seed=5)
  v = attention.VARIANTS["mocha"]
  fn = jax.jit(attention.step_fn(v, width))
  keys = v.prepare_keys(params, jnp.asarray(states), jnp.asarray(summary))
  state = attention.initial_state(v, jnp.asarray(mask))
  for t, q in enumerate(queries):
    _, beta, state = fn(params, jnp.asarray(q), keys, jnp.asarray(states), jnp.asarray(mask),
                        jnp.int32(t), state, jnp.zeros((0,)))
    np.testing.assert_allclose(float(jnp.sum(beta)), float(jnp.sum(state.alignment)), rtol=1e-5)
    if width == 1:
      np.testing.assert_allclose(np.asarray(beta), np.asarray(state.alignment), rtol=1e-5,
                                 atol=1e-7)
