"""argmax.argmax against jnp.argmax: first index of the maximum, ties, infinities, NaN."""

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.model.argmax import argmax


def test_matches_jnp_argmax_on_random_rows_with_ties():
  rng = np.random.default_rng(0)
  x = rng.integers(-3, 4, size=(5, 7, 40)).astype(np.float32)  # many ties per row
  got = np.asarray(jax.jit(argmax)(x))
  assert got.dtype == np.int32 and got.shape == (5, 7)
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(x, axis=-1)))
  np.testing.assert_array_equal(got, np.argmax(x, axis=-1))  # the first of equal maxima


def test_infinities_and_nan_as_jnp_argmax():
  x = np.array([[1.0, 3.0, 3.0, 0.0],
                [np.nan, 1.0, np.nan, 5.0],
                [-np.inf] * 4,
                [2.0, np.inf, np.inf, np.nan],
                [0.0, -np.inf, np.inf, 1.0]], np.float32)
  np.testing.assert_array_equal(np.asarray(argmax(x)), np.asarray(jnp.argmax(x, axis=-1)))
  np.testing.assert_array_equal(np.asarray(argmax(x)), [1, 0, 0, 3, 2])
