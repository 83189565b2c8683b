"""The additive (concat) score of Bahdanau et al. 2014, eq. 6, in parts.

score(q, k_j) = v^T tanh(W q + U k_j + b), for one example. U k_j + b depends on the
source alone, so `prepare_keys` computes it once per sentence and the decoder passes it
to every step. The parts are shared by the variants built on this score: `additive`
itself, coverage's score (which adds a term inside the tanh), monotonic attention's
energy and MoChA's chunk energy (monotonic.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn_jax.model import layers


def init(key, sizes):
  """W [query, attention], U and b [key, attention], v [attention, 1]; `sizes`: the
  attention module's Sizes."""
  k_q, k_k, k_v = jax.random.split(key, 3)
  return {
      "query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),  # W
      "key": layers.dense_init(k_k, sizes.key, sizes.attention),  # U, b
      "v": layers.dense_init(k_v, sizes.attention, 1, bias=False),  # v
  }


def prepare_keys(params, states, summary):
  """states [S, key] -> U k_j + b [S, attention], once per sentence."""
  del summary
  return layers.dense(params["key"], states)  # [S, attention]


@jax.checkpoint
def tanh_scores(v_params, keys, query_proj):
  """v^T tanh(U k_j + b + W q) [S] from keys [S, attention] and W q [attention].

  Rematerialised: the backward pass recomputes the tanh instead of keeping it, so a
  teacher-forced scan stores W q [attention] per step, not [S, attention].
  """
  hidden = jnp.tanh(keys + query_proj)  # [S, attention]
  return layers.dense(v_params, hidden)[:, 0]  # [S]


def score(params, query, keys):
  """score(q, k_j) = v^T tanh(W q + U k_j + b) [S]  (Bahdanau eq. 6); keys from
  prepare_keys."""
  return tanh_scores(params["v"], keys, layers.dense(params["query"], query))  # [S]
