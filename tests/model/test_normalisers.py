"""softmax, sparsemax and 1.5-entmax against NumPy transcriptions of the papers, masking,
and the sparse ones' custom JVPs against finite differences."""

from __future__ import annotations

import jax
from jax import test_util
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.model import normalisers


CASES = {"sparsemax": (normalisers.sparsemax, helpers.sparsemax),
         "entmax15": (normalisers.entmax15, helpers.entmax15)}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", range(6))
def test_matches_the_papers_equations_and_masks_padding(name, seed):
  normalise, reference = CASES[name]
  rng = np.random.default_rng(seed)
  scores = rng.normal(scale=[0.3, 1.0, 3.0][seed % 3], size=9).astype(np.float32)
  mask = np.arange(9) < 4 + seed % 5
  weights = np.asarray(normalise(jnp.asarray(scores), jnp.asarray(mask)))
  np.testing.assert_allclose(weights, reference(scores, mask), atol=2e-6)
  assert (weights[~mask] == 0).all() and abs(weights.sum() - 1) < 1e-5
  assert (weights >= 0).all()


@pytest.mark.parametrize("name", CASES)
def test_sparse_where_softmax_is_not(name):
  normalise, _ = CASES[name]
  weights = normalise(jnp.array([3.0, 2.9, 0.0, -1.0, -5.0]), jnp.ones(5, bool))
  assert float(weights[-1]) == 0.0 and float(weights[0]) > 0.0  # exactly zero, unlike softmax
  one = normalise(jnp.array([0.5, 7.0]), jnp.array([True, False]))
  assert one.tolist() == [1.0, 0.0]  # one real position takes all the weight


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_custom_jvp_against_finite_differences(name, seed):
  normalise, _ = CASES[name]
  rng = np.random.default_rng(seed)
  with jax.enable_x64(True):
    scores = jnp.asarray(rng.normal(scale=1.5, size=7))
    mask = jnp.asarray(np.arange(7) < 6)
    weights = jnp.asarray(rng.normal(size=7))
    loss = lambda s: jnp.sum(weights * normalise(s, mask))
    test_util.check_grads(loss, (scores,), order=1, modes=("fwd", "rev"), eps=1e-6)
    test_util.check_grads(lambda s: normalise(s, mask), (scores,), order=1,
                          modes=("fwd", "rev"), eps=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_vmaps_and_jits(name):
  normalise, reference = CASES[name]
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(3, 5)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
  batched = np.asarray(jax.jit(jax.vmap(normalise))(scores, mask))
  for row in range(3):
    np.testing.assert_allclose(batched[row], reference(scores[row], mask[row]), atol=2e-6)


@pytest.mark.parametrize("name", CASES)
def test_huge_negative_scores_stay_finite(name):
  normalise, _ = CASES[name]
  weights = normalise(jnp.array([1.0, -1e30, 0.5, -1e30]), jnp.array([True, True, True, False]))
  assert np.isfinite(np.asarray(weights)).all() and float(weights[1]) == 0.0
  grad = jax.grad(lambda s: normalise(s, jnp.ones(4, bool))[0])(jnp.array([1.0, -1e30, 0.5, 0.2]))
  assert np.isfinite(np.asarray(grad)).all()


def test_masked_softmax_direct():
  scores = jnp.array([3.0, -1e9, 1e9, 0.5, 2.0])
  mask = jnp.array([True, False, False, True, True])
  w = np.asarray(normalisers.masked_softmax(scores, mask))
  assert w[1] == 0.0 and w[2] == 0.0
  np.testing.assert_allclose(w, helpers.masked_softmax(np.asarray(scores, np.float64),
                                                       np.asarray(mask)), rtol=1e-6)
