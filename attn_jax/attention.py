"""Attention variants and the one registry that names them.

Every variant is written for ONE example and vmapped over the batch by the
decoder. A variant has three pure functions:

* ``init(key, query_size, key_size, attention_size) -> params``
* ``prepare_keys(params, states [S, A], summary [A]) -> keys``: everything that
  depends on the source alone (U k, W k), computed once per sentence before
  the decoder's time loop and passed in explicitly at every step.
* ``attend(params, query [H], keys, values [S, V], mask [S]) ->
  (context [V], weights [S])``.

Scores of padded positions are masked before the softmax, so padding gets
weight exactly 0 and the weights of a sentence sum to 1.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from attn_jax import layers

_MASKED = -1e30  # exp(_MASKED - max) underflows to exactly 0 in float32


class Flops(NamedTuple):
  """Matmul FLOPs (2 m n k) of one sentence's attention, by what they scale with."""
  per_key: int  # prepare_keys, per source position
  per_query: int  # per decoder step, whatever the source length
  per_pair: int  # per (decoder step, source position): scores and context


class Variant(NamedTuple):
  init: Callable[..., dict]
  prepare_keys: Callable[[dict, jax.Array, jax.Array], jax.Array]
  attend: Callable[..., tuple[jax.Array, jax.Array]]
  # (query_size, key_size, attention_size) -> Flops; key_size is also the value size.
  flops: Callable[[int, int, int], Flops]
  has_weights: bool = True  # False for the fixed-context baseline


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """scores [S], mask [S] bool -> weights [S]: softmax over mask, exactly 0 elsewhere."""
  scores = jnp.where(mask, scores, _MASKED)
  weights = jax.nn.softmax(scores)
  return jnp.where(mask, weights, 0.0)


def _attend_with(score: Callable[[dict, jax.Array, jax.Array], jax.Array]):
  """Builds attend() from a score function score(params, query [H], keys) -> [S]."""
  def attend(params, query, keys, values, mask):
    weights = masked_softmax(score(params, query, keys), mask)  # [S]
    context = weights @ values  # [V]
    return context, weights
  return attend


# -- none: the RNNencdec baseline (Cho et al. 2014) ---------------------------

def _none_init(key, query_size, key_size, attention_size):
  del key, query_size, key_size, attention_size
  return {}


def _none_prepare(params, states, summary):
  del params, states
  return summary[None, :]  # [1, A]: the one fixed context vector


def _none_attend(params, query, keys, values, mask):
  """c_t = c for every t: the encoder's final state, whatever the query."""
  del params, query, values
  return keys[0], jnp.zeros(mask.shape, jnp.float32)


# -- dot, scaled dot, general (Luong et al. 2015, eq. 8) ----------------------

def _dot_init(key, query_size, key_size, attention_size):
  """Raw q.k needs equal sizes: otherwise project the keys once to the query size."""
  del attention_size
  if key_size == query_size:
    return {}
  return {"key_proj": layers.dense_init(key, key_size, query_size, bias=False)}


def _general_init(key, query_size, key_size, attention_size):
  del attention_size
  return {"W": layers.dense_init(key, key_size, query_size, bias=False)}


def _project_keys(params, states, summary):
  """keys [S, H] = W k for every source position (identity without W)."""
  del summary
  for name in ("key_proj", "W"):
    if name in params:
      return layers.dense(params[name], states)  # [S, H]
  return states  # [S, H]


def dot_score(params, query, keys):
  """score(q, k_j) = q . k_j  (Luong eq. 8, "dot")."""
  del params
  return keys @ query  # [S]


def scaled_dot_score(params, query, keys):
  """score(q, k_j) = q . k_j / sqrt(d)  (Vaswani et al. 2017, eq. 1)."""
  del params
  return keys @ query / math.sqrt(query.shape[-1])  # [S]


# general: score(q, k_j) = q^T W k_j (Luong eq. 8); W k_j is precomputed, so
# the per-step score is dot_score on the projected keys.


# -- additive (Bahdanau et al. 2014, eq. 6 / appendix A.1.2) ------------------

def _additive_init(key, query_size, key_size, attention_size):
  k_q, k_k, k_v = jax.random.split(key, 3)
  return {
      "query": layers.dense_init(k_q, query_size, attention_size, bias=False),  # W
      "key": layers.dense_init(k_k, key_size, attention_size),  # U, b
      "v": layers.dense_init(k_v, attention_size, 1, bias=False),  # v
  }


def _additive_prepare(params, states, summary):
  del summary
  return layers.dense(params["key"], states)  # U k_j + b  [S, attention]


def additive_score(params, query, keys):
  """score(q, k_j) = v^T tanh(W q + U k_j + b)  (Bahdanau eq. 6)."""
  hidden = jnp.tanh(keys + layers.dense(params["query"], query))  # [S, attention]
  return layers.dense(params["v"], hidden)[:, 0]  # [S]


def _none_flops(query_size, key_size, attention_size):
  del query_size, key_size, attention_size
  return Flops(0, 0, 0)


def _dot_flops(query_size, key_size, attention_size):
  del attention_size  # keys projected only when the sizes differ; q.k and the context
  return Flops(0 if key_size == query_size else 2 * key_size * query_size, 0,
               2 * query_size + 2 * key_size)


def _general_flops(query_size, key_size, attention_size):
  del attention_size  # W k once per key; q.(W k) and the context per pair
  return Flops(2 * key_size * query_size, 0, 2 * query_size + 2 * key_size)


def _additive_flops(query_size, key_size, attention_size):
  # U k once per key; W q once per step; v.tanh(...) and the context per pair
  return Flops(2 * key_size * attention_size, 2 * query_size * attention_size,
               2 * attention_size + 2 * key_size)


VARIANTS: dict[str, Variant] = {
    "none": Variant(_none_init, _none_prepare, _none_attend, _none_flops, has_weights=False),
    "dot": Variant(_dot_init, _project_keys, _attend_with(dot_score), _dot_flops),
    "scaled_dot": Variant(_dot_init, _project_keys, _attend_with(scaled_dot_score), _dot_flops),
    "general": Variant(_general_init, _project_keys, _attend_with(dot_score), _general_flops),
    "additive": Variant(_additive_init, _additive_prepare, _attend_with(additive_score),
                        _additive_flops),
}


def batched(variant: Variant) -> tuple[Callable, Callable]:
  """The vmapped (prepare_keys, attend) of a variant: params shared, the rest per example.

  prepare_keys: (params, states [B, S, A], summary [B, A]) -> keys [B, S, ...]
  attend: (params, query [B, H], keys, values [B, S, V], mask [B, S])
          -> (context [B, V], weights [B, S])
  """
  prepare = jax.vmap(variant.prepare_keys, in_axes=(None, 0, 0))
  attend = jax.vmap(variant.attend, in_axes=(None, 0, 0, 0, 0))
  return prepare, attend
