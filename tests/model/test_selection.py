"""selection: the CPU versions of argmax (against jnp.argmax: first index of the maximum,
ties, infinities, NaN) and top-k (against jax.lax.top_k: values, indices, ties, -inf, ragged
chunks), and the backend's choice between them and the standard operations."""

import jax
import jax.numpy as jnp
import numpy as np

import pytest

from attn_jax.model import selection
from attn_jax.model.selection import argmax, chunked_top_k, reduction_argmax, top_k


def test_matches_jnp_argmax_on_random_rows_with_ties():
  rng = np.random.default_rng(0)
  x = rng.integers(-3, 4, size=(5, 7, 40)).astype(np.float32)  # many ties per row
  got = np.asarray(jax.jit(reduction_argmax)(x))
  assert got.dtype == np.int32 and got.shape == (5, 7)
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(x, axis=-1)))
  np.testing.assert_array_equal(got, np.argmax(x, axis=-1))  # the first of equal maxima


def test_infinities_and_nan_as_jnp_argmax():
  x = np.array([[1.0, 3.0, 3.0, 0.0],
                [np.nan, 1.0, np.nan, 5.0],
                [-np.inf] * 4,
                [2.0, np.inf, np.inf, np.nan],
                [0.0, -np.inf, np.inf, 1.0]], np.float32)
  np.testing.assert_array_equal(np.asarray(reduction_argmax(x)), np.asarray(jnp.argmax(x, axis=-1)))
  np.testing.assert_array_equal(np.asarray(reduction_argmax(x)), [1, 0, 0, 3, 2])


@pytest.mark.parametrize("n, k, chunk", [(1000, 10, 16), (999, 3, 8), (40, 2, 4), (30, 8, 4)])
def test_matches_lax_top_k_with_many_ties(n, k, chunk):
  rng = np.random.default_rng(n + k)
  x = rng.integers(-5, 6, size=(3, 4, n)).astype(np.float32)  # many equal values
  x[0, 0, :] = 1.0  # a row of one value
  x[1, 1, : n // 2] = -np.inf
  x[2, 2, :] = -np.inf
  x[2, 3, n - 1] = 100.0  # the maximum in the last, padded chunk
  got = jax.jit(lambda x: chunked_top_k(x, k, chunk))(x)
  want = jax.lax.top_k(x, k)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
  assert got[1].dtype == jnp.int32 and got[0].shape == (3, 4, k)


def test_random_floats_at_the_beam_search_shape():
  x = jax.random.normal(jax.random.key(0), (8, 5 * 8000))
  got, want = chunked_top_k(x, 10), jax.lax.top_k(x, 10)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))


def test_the_backend_picks_the_implementation(monkeypatch):
  """The CPU versions on the CPU backend, jnp.argmax and lax.top_k elsewhere; the same results."""
  x = jax.random.normal(jax.random.key(1), (4, 3000))
  want_values, want_index = jax.lax.top_k(x, 5)
  for backend, cpu_calls in (("cpu", 2), ("gpu", 0)):
    calls = []
    monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
    monkeypatch.setattr(selection, "chunked_top_k",
                        lambda *a, **k: calls.append(1) or chunked_top_k(*a, **k))
    monkeypatch.setattr(selection, "reduction_argmax",
                        lambda *a: calls.append(1) or reduction_argmax(*a))
    values, index = top_k(x, 5)
    got = argmax(x)
    assert len(calls) == cpu_calls, backend
    np.testing.assert_array_equal(np.asarray(index), np.asarray(want_index))
    np.testing.assert_array_equal(np.asarray(values), np.asarray(want_values))
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.argmax(x, axis=-1)))
