"""argmax and top-k along the last axis, chosen by backend.

On XLA's CPU backend the standard operations are slow for the sizes decoding and the
metrics meet: `jnp.argmax` lowers to one variadic (value, index) reduction that the CPU
backend does not vectorise, and `jax.lax.top_k` sorts each row partially in a runtime
call. There the versions below give the same results from plain, vectorised reductions
(timings: experiments/results/speed.md). On GPUs and TPUs the standard operations run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CHUNK = 64  # entries per chunk of chunked_top_k


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def argmax(x: jax.Array) -> jax.Array:
  """The first index of the largest element along the last axis: [..., n] -> int32 [...];
  the first NaN where a row holds one (as jnp.argmax)."""
  if _on_cpu():
    return reduction_argmax(x)
  return jnp.argmax(x, axis=-1).astype(jnp.int32)


def top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The k largest entries of each row and their indices, largest first, the lower index
  first among equals: [..., n] -> (values [..., k], int32 indices [..., k]), as
  jax.lax.top_k(x, k). Rows must not hold NaN."""
  if _on_cpu():
    return chunked_top_k(x, k)
  return jax.lax.top_k(x, k)


def reduction_argmax(x: jax.Array) -> jax.Array:
  """argmax as a max reduction, then a min reduction over the indices attaining it."""
  n = x.shape[-1]
  top = jnp.max(x, axis=-1, keepdims=True)  # [..., 1]; NaN where the row holds a NaN
  attains = (x == top) | (jnp.isnan(x) & jnp.isnan(top))  # [..., n]
  index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)  # [..., n]
  return jnp.min(jnp.where(attains, index, n), axis=-1)


def chunked_top_k(x: jax.Array, k: int, chunk: int = CHUNK) -> tuple[jax.Array, jax.Array]:
  """Exact top-k through chunk maxima.

  The k largest entries of a row lie within the k chunks of the row with the largest
  maxima: a chunk ranked below k others by its maximum has k entries above each of its
  own. So a max reduction over chunks, `lax.top_k` over the chunk maxima, and `lax.top_k`
  over the k chosen chunks (taken in index order) give the values and indices of
  `lax.top_k` itself, ties included.
  """
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
