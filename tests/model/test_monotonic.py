"""The expected monotonic alignment (Raffel et al. 2017, eq. 9-12) against its closed
forms, where they can be computed, and where they cannot. The variants built on it
(monotonic, mocha) are tested against NumPy through the registry in test_attention.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.model import monotonic

S = 7  # source positions


def test_expected_alignment_is_stable_where_the_cumulative_product_underflows():
  """p = 1 at every position: prod(1 - p) is 0, which the clipped form divides by safely;
  alpha_i stays at alpha_{i-1}'s position, and the gradient is finite."""
  previous = jnp.asarray(np.eye(S)[2])
  alpha = monotonic.expected_alignment(jnp.ones(S), previous)
  np.testing.assert_allclose(np.asarray(alpha), np.eye(S)[2], atol=1e-6)
  grad = jax.grad(lambda e: jnp.sum(monotonic.expected_alignment(jax.nn.sigmoid(e), previous)
                                    * jnp.arange(S)))(jnp.full(S, 30.0))
  assert np.all(np.isfinite(np.asarray(grad)))


def test_expected_alignment_equals_the_cumulative_product_form_where_that_is_safe():
  """Raffel et al. eq. 12, alpha_i = p_i cumprod(1 - p_i) cumsum(alpha_{i-1} / cumprod(1 - p_i))
  with exclusive cumprod, equals the scan where the product stays away from 0."""
  rng = np.random.default_rng(8)
  p = rng.uniform(0.05, 0.6, size=S)
  previous = rng.dirichlet(np.ones(S))
  keep = np.concatenate([[1.0], np.cumprod(1 - p)[:-1]])  # exclusive cumprod
  closed = p * keep * np.cumsum(previous / keep)
  np.testing.assert_allclose(np.asarray(monotonic.expected_alignment(
      jnp.asarray(p, jnp.float32), jnp.asarray(previous, jnp.float32))), closed, rtol=1e-5,
      atol=1e-7)
