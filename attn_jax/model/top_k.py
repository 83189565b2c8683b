"""Exact top-k along the last axis through chunk maxima, fast on XLA's CPU backend for small k.

`jax.lax.top_k` on the XLA CPU backend sorts each row partially in a runtime call:
2.6 ms for the [64, 40,000] candidate scores (k = 10) of a beam-search step with 64
sentences, beam 5 and 8,000 target subwords, on a 2-core AVX-512 CPU, where a max
reduction over the same array takes 0.12 ms. The k largest entries of a row lie within
the k chunks of the row with the largest maxima: a chunk ranked below k others by
its maximum has k entries above each of its own. So a max reduction over chunks,
`lax.top_k` over the chunk maxima, and `lax.top_k` over the k chosen chunks (taken in
index order) give the values and indices of `lax.top_k` itself, ties included: the
lower index first. Rows must not hold NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CHUNK = 64  # entries per chunk


def top_k(x: jax.Array, k: int, chunk: int = CHUNK) -> tuple[jax.Array, jax.Array]:
  """The k largest entries of each row and their indices, largest first:
  [..., n] -> (values [..., k], int32 indices [..., k]), as jax.lax.top_k(x, k)."""
  *lead, n = x.shape
  if k * chunk >= n:  # too few chunks to leave any out
    return jax.lax.top_k(x, k)
  pad = -n % chunk
  padded = jnp.pad(x, [(0, 0)] * len(lead) + [(0, pad)], constant_values=-jnp.inf)
  blocks = padded.reshape(*lead, (n + pad) // chunk, chunk)  # [..., chunks, chunk]
  _, chosen = jax.lax.top_k(jnp.max(blocks, axis=-1), k)  # [..., k]
  chosen = jnp.sort(chosen, axis=-1)  # index order, so equal values keep lax.top_k's order
  candidates = jnp.take_along_axis(blocks, chosen[..., None], axis=-2)  # [..., k, chunk]
  values, at = jax.lax.top_k(candidates.reshape(*lead, k * chunk), k)  # [..., k]
  index = jnp.take_along_axis(chosen, at // chunk, axis=-1) * chunk + at % chunk  # [..., k]
  return values, index.astype(jnp.int32)
