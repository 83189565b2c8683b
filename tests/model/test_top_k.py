"""top_k.top_k against jax.lax.top_k: values, indices, ties, -inf, ragged chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.model.top_k import top_k


@pytest.mark.parametrize("n, k, chunk", [(1000, 10, 16), (999, 3, 8), (40, 2, 4), (30, 8, 4)])
def test_matches_lax_top_k_with_many_ties(n, k, chunk):
  rng = np.random.default_rng(n + k)
  x = rng.integers(-5, 6, size=(3, 4, n)).astype(np.float32)  # many equal values
  x[0, 0, :] = 1.0  # a row of one value
  x[1, 1, : n // 2] = -np.inf
  x[2, 2, :] = -np.inf
  x[2, 3, n - 1] = 100.0  # the maximum in the last, padded chunk
  got = jax.jit(lambda x: top_k(x, k, chunk))(x)
  want = jax.lax.top_k(x, k)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
  assert got[1].dtype == jnp.int32 and got[0].shape == (3, 4, k)


def test_random_floats_at_the_beam_search_shape():
  x = jax.random.normal(jax.random.key(0), (8, 5 * 8000))
  got, want = top_k(x, 10), jax.lax.top_k(x, 10)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
