"""Multi-head attention over the encoder states (Chen et al. 2018, RNMT+; Vaswani et al.
2017, eq. 1 and sec. 3.2.2), for one example.

The query, key and value projections are split into N heads (Sizes.heads, dividing the
attention and key sizes); each head scores its own projected keys with its own
parameters, additive (v_n^T tanh(W_n q + U_n k_j + b_n)) or scaled dot, and has its own
softmax. The context is the concatenation of the heads' contexts over per-head value
projections W^V, so it keeps the key size. The attend function the registry uses returns
the heads' mean weights; `attend_heads` returns every head's, which the evaluation reports
(the head average and the best head).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from attn_jax.model import layers, normalisers


def init(key, sizes):
  """Per head n of N: query and key projections to attention/N, values projected to key/N
  (W^V, so the concatenated context keeps the key size), and for the additive score v_n."""
  k_q, k_k, k_v, k_s = jax.random.split(key, 4)
  return {"query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),
          "key": layers.dense_init(k_k, sizes.key, sizes.attention),
          "value": layers.dense_init(k_v, sizes.key, sizes.key, bias=False),
          "v": layers.dense_init(k_s, sizes.attention // sizes.heads, sizes.heads, bias=False)}


def prepare_keys(params, states, summary):
  """keys [S, attention + key]: U k_j + b of every head, then W^V k_j of every head."""
  del summary
  return jnp.concatenate([layers.dense(params["key"], states),
                          layers.dense(params["value"], states)], axis=-1)


def attend_functions(score_heads):
  """(attend, attend_heads) of a multi-head variant from score_heads(params, query [H],
  keys [S, N, d]) -> scores [N, S]: softmax per head, context = concat_n (sum_j a_nj
  W^V_n k_j) [key]; attend_heads returns every head's weights [N, S], attend their mean
  [S] (each head's sum to 1, so the mean does). Both take the attention module's
  (params, query [H], keys, values [S, V], mask [S], t [], window)."""
  def attend_heads(params, query, keys, values, mask, t, window):
    del values, t, window
    heads = params["v"]["kernel"].shape[1]
    size = params["query"]["kernel"].shape[1]
    length = keys.shape[0]
    k = keys[:, :size].reshape(length, heads, size // heads)  # [S, N, d]
    v = keys[:, size:].reshape(length, heads, -1)  # [S, N, key/N]
    weights = jax.vmap(normalisers.masked_softmax, in_axes=(0, None))(
        score_heads(params, query, k), mask)  # [N, S]
    context = jnp.einsum("ns,snv->nv", weights, v).reshape(-1)  # [key]
    return context, weights  # [key], [N, S]

  def attend(params, query, keys, values, mask, t, window):
    context, weights = attend_heads(params, query, keys, values, mask, t, window)
    return context, jnp.mean(weights, axis=0)  # [key], [S]
  return attend, attend_heads


def additive_scores(params, query, keys):
  """v_n^T tanh(W_n q + U_n k_j + b_n) per head (Bahdanau eq. 6 in each of N heads)."""
  heads, d = keys.shape[1], keys.shape[2]
  q = layers.dense(params["query"], query).reshape(heads, d)  # [N, d]
  hidden = jnp.tanh(keys + q[None])  # [S, N, d]
  return jnp.einsum("snd,dn->ns", hidden, params["v"]["kernel"])  # [N, S]


def scaled_dot_scores(params, query, keys):
  """(W^Q_n q) . (W^K_n k_j) / sqrt(d) per head (Vaswani eq. 1; d = attention / N)."""
  heads, d = keys.shape[1], keys.shape[2]
  q = layers.dense(params["query"], query).reshape(heads, d)  # [N, d]
  return jnp.einsum("nd,snd->ns", q, keys) / math.sqrt(d)  # [N, S]
