"""Normalisers from masked scores to attention weights: softmax, sparsemax, 1.5-entmax.

Each maps scores z [S] and a mask [S] to weights on the simplex over the real positions,
padded positions exactly 0, written for one example:

* softmax, the normaliser of every variant unless named otherwise.
* sparsemax (Martins & Astudillo 2016, eq. 2): the Euclidean projection of z onto the
  simplex, p = [z - tau]_+, with tau from the sorted scores (their Algorithm 1, eq. 3);
  its Jacobian (their eq. 12) is diag(s) - s s^T / |S|, s the support's indicator.
* 1.5-entmax (Peters, Niculae & Martins 2019, eq. 9 with alpha = 1.5):
  p = [z/2 - tau]_+^2, tau found exactly by sorting (their Algorithm 2); with
  g = [z/2 - tau]_+ its Jacobian is diag(g) - g g^T / sum(g) (their Proposition 1
  applied to alpha = 1.5), which the custom JVPs below use.

The two sparse ones give weights that can be exactly 0 at real positions too. For
numerical range their scores are shifted by their maximum, and padded ones (and real ones
far below the rest, such as the location score's MASKED past its rows) are set just below
the lowest score that could still be in the support (max - 1 for sparsemax, max/2 - 1 for
entmax), so no value is huge.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

MASKED = -1e30  # a score that exp(MASKED - max) turns into exactly 0 in float32

Normaliser = Callable[[jax.Array, jax.Array], jax.Array]  # (scores [S], mask [S]) -> weights [S]


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """scores [S], mask [S] bool -> weights [S]: softmax over mask, exactly 0 elsewhere."""
  scores = jnp.where(mask, scores, MASKED)
  weights = jax.nn.softmax(scores)
  return jnp.where(mask, weights, 0.0)


def _shifted(scores: jax.Array, mask: jax.Array, floor: float) -> jax.Array:
  """scores [S] minus their maximum over the real positions, raised to at least `floor`
  (below every value that can be in the support, so nothing changes but the range);
  padded positions at `floor`."""
  top = jnp.max(jnp.where(mask, scores, -jnp.inf))
  return jnp.where(mask, jnp.maximum(scores - top, floor), floor)  # [S]


def _sparsemax_threshold(z: jax.Array) -> jax.Array:
  """tau [] of sparsemax (Martins & Astudillo eq. 3) for scores z [S]."""
  z_sorted = -jnp.sort(-z)  # [S], descending
  k = jnp.arange(1, z.shape[0] + 1, dtype=z.dtype)  # [S]
  cumulative = jnp.cumsum(z_sorted)  # [S]
  support = 1.0 + k * z_sorted > cumulative  # [S]: a prefix of True
  size = jnp.sum(support)
  return (cumulative[size - 1] - 1.0) / size.astype(z.dtype)


@jax.custom_jvp
def _sparsemax(z: jax.Array) -> jax.Array:
  return jnp.maximum(z - _sparsemax_threshold(z), 0.0)  # [S]


@_sparsemax.defjvp
def _sparsemax_jvp(primals, tangents):
  (z,), (dz,) = primals, tangents
  p = _sparsemax(z)
  s = (p > 0).astype(z.dtype)  # [S]: the support
  return p, s * (dz - jnp.sum(s * dz) / jnp.sum(s))  # Martins & Astudillo eq. 12


def sparsemax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """scores [S], mask [S] bool -> weights [S]: sparsemax over mask, exactly 0 elsewhere."""
  return jnp.where(mask, _sparsemax(_shifted(scores, mask, -2.0)), 0.0)


def _entmax15_threshold(x: jax.Array) -> jax.Array:
  """tau [] of 1.5-entmax (Peters et al. Algorithm 2) for halved scores x [S]."""
  x_sorted = -jnp.sort(-x)  # [S], descending
  k = jnp.arange(1, x.shape[0] + 1, dtype=x.dtype)  # [S]
  mean = jnp.cumsum(x_sorted) / k  # [S]
  mean_sq = jnp.cumsum(x_sorted ** 2) / k  # [S]
  delta = (1.0 - k * (mean_sq - mean ** 2)) / k  # [S]
  tau = mean - jnp.sqrt(jnp.maximum(delta, 0.0))  # [S]: the threshold if k were the support
  size = jnp.sum(tau <= x_sorted)
  return tau[size - 1]


@jax.custom_jvp
def _entmax15(x: jax.Array) -> jax.Array:
  return jnp.maximum(x - _entmax15_threshold(x), 0.0) ** 2  # [S]


@_entmax15.defjvp
def _entmax15_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  p = _entmax15(x)
  g = jnp.sqrt(p)  # [S]: [x - tau]_+
  dp = 2.0 * (g * dx - g * jnp.sum(g * dx) / jnp.sum(g))  # d/dx of [x - tau]_+^2
  return p, dp


def entmax15(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """scores [S], mask [S] bool -> weights [S]: 1.5-entmax over mask, exactly 0 elsewhere."""
  return jnp.where(mask, _entmax15(_shifted(scores, mask, -4.0) / 2.0), 0.0)
