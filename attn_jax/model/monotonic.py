"""Monotonic attention (Raffel et al. 2017) and MoChA (Chiu & Raffel 2018), for one example.

Both attend by a left-to-right choice, at every output step i, to stop at a source
position j or move on: p_ij = sigmoid(e_ij), with the energy
e_ij = g v^T/||v|| tanh(W s_i + V h_j + b) + r (Raffel et al. sec. 2.5).

* Training and teacher-forced evaluation use the expected alignment alpha_i in closed
  form (eq. 9-11, `expected_alignment`), with N(0, 1) noise before the sigmoid while
  training; the state carried between decoder steps is alpha_{i-1}.
* Searches use hard monotonic attention (Algorithm 1): from where the previous step
  stopped, the first j with p_ij >= 0.5. Every source position is passed once per
  sentence, so decoding is linear in the source length; the state is that position.
* MoChA adds a softmax of an additive chunk energy u_ij over the `window` positions
  that end where monotonic attention stops (its expected form: `chunkwise_weights`).

The attention module's registry makes `monotonic` and `mocha` of these functions, as
variants with a recurrence; their attend functions take and return the state:
(params, query [H], keys, values [S, V], mask [S], state, noise [S] or [0], window)
-> (context [V], weights [S], state).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.model import additive, layers, normalisers

ENERGY_BIAS = -4.0  # r's initial value (Raffel et al. sec. 2.5): stop rarely at first


class MonotonicState(NamedTuple):
  alignment: jax.Array  # float32 [S]: alpha_{i-1}, the expected alignment (training)
  position: jax.Array  # int32 []: t_{i-1}, where hard attention stopped last (searches);
  # the source length once it ran past the end (every later context is then 0)


def init(key, sizes):
  """W (query), V and b (key), v, and the scalars g (= 1/sqrt(attention)) and r."""
  k_q, k_k, k_v = jax.random.split(key, 3)
  return {"query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),
          "key": layers.dense_init(k_k, sizes.key, sizes.attention),
          "v": layers.dense_init(k_v, sizes.attention, 1, bias=False),
          "g": jnp.asarray(1.0 / math.sqrt(sizes.attention), jnp.float32),
          "r": jnp.asarray(ENERGY_BIAS, jnp.float32)}


def _normalised_v(params):
  """{"kernel": g v / ||v||} [attention, 1] (weight normalisation, Raffel sec. 2.5)."""
  v = params["v"]["kernel"]  # [attention, 1]
  return {"kernel": params["g"] * v / jnp.linalg.norm(v)}


def energy(params, query, keys):
  """e_ij = g v^T/||v|| tanh(W s + V h_j + b) + r [S] (Raffel et al. sec. 2.5)."""
  query_proj = layers.dense(params["query"], query)  # [attention]
  return additive.tanh_scores(_normalised_v(params), keys, query_proj) + params["r"]  # [S]


def first_state(mask):
  """alpha_0 = delta_{j,0}: attention starts at the first source position."""
  return MonotonicState(alignment=jax.nn.one_hot(0, mask.shape[0], dtype=jnp.float32),
                        position=jnp.zeros((), jnp.int32))


def expected_alignment(p, previous):
  """alpha_i [S] from the stopping probabilities p_i [S] and alpha_{i-1} [S].

  alpha_ij = p_ij sum_k alpha_{i-1,k} prod_{l=k}^{j-1} (1 - p_il) (eq. 9), computed through
  the recurrence q_ij = (1 - p_i,j-1) q_i,j-1 + alpha_{i-1,j}, alpha_ij = p_ij q_ij (eq. 10-11)
  as a parallel associative scan over j (log S deep). It needs no division: the closed
  form alpha_i = p_i cumprod(1 - p_i) cumsum(alpha_{i-1} / cumprod(1 - p_i)) (eq. 12) divides
  by a product that underflows where p is near 1, and clipping it (sec. 2.5) then loses the
  alignment (alpha 1e-10 where it should be 1).
  """
  keep = jnp.concatenate([jnp.zeros((1,), p.dtype), 1.0 - p[:-1]])  # 1 - p_i,j-1; q_i,-1 = 0

  def compose(first, second):  # q -> a q + b, then the next: (a1 a2, a2 b1 + b2)
    (a1, b1), (a2, b2) = first, second
    return a1 * a2, a2 * b1 + b2

  _, q = jax.lax.associative_scan(compose, (keep, previous))  # [S]
  return p * q  # [S]


def _expected(params, query, keys, mask, state, noise):
  """alpha_i [S] while training: p_ij = sigmoid(e_ij + noise) (noise ~ N(0, 1) while
  training, sec. 2.5), p = 0 at padding, alpha_i = expected_alignment (eq. 9-12)."""
  e = energy(params, query, keys)  # [S]
  if noise.shape[0]:
    e = e + noise
  p = jnp.where(mask, jax.nn.sigmoid(e), 0.0)  # [S]
  return jnp.where(mask, expected_alignment(p, state.alignment), 0.0)  # [S]


def attend_expected(params, query, keys, values, mask, state, noise, window):
  """Training: alpha_i (_expected_monotonic), c_i = sum_j alpha_ij h_j. The weights sum to
  at most 1: the rest is the chance of having run past the end."""
  del window
  alignment = _expected(params, query, keys, mask, state, noise)  # [S]
  return alignment @ values, alignment, state._replace(alignment=alignment)


def _hard_stop(params, query, keys, mask, state, columns: slice = slice(None)):
  """Hard monotonic attention (Raffel et al. Algorithm 1): from j = t_{i-1}, the first j
  with p_ij = sigmoid(e_ij) >= 0.5 (e_ij >= 0). Energies are computed one position at a
  time, so a whole sentence computes O(source + target) of them; `columns` of a key row
  are the energy's (read per position: slicing all of keys would copy them every step).
  Returns (j, found, the state at j; past the end: position = the source length, and
  nothing is found again)."""
  length = jnp.sum(mask).astype(jnp.int32)
  query_proj = layers.dense(params["query"], query)  # [attention]
  v = _normalised_v(params)

  def stops(j):
    hidden = jnp.tanh(keys[j, columns] + query_proj)  # [attention]
    return layers.dense(v, hidden)[0] + params["r"] >= 0.0

  def more(carry):
    j, found = carry
    return (j < length) & ~found

  def move(carry):
    j, _ = carry
    found = stops(j)
    return jnp.where(found, j, j + 1), found

  j, found = jax.lax.while_loop(more, move, (state.position, jnp.zeros((), jnp.bool_)))
  return j, found, state._replace(position=jnp.where(found, j, length))


def attend_hard(params, query, keys, values, mask, state, noise, window):
  """Searches: attend to h_j alone where _hard_stop stops; past the end the context is 0."""
  del noise, window
  j, found, state = _hard_stop(params, query, keys, mask, state)
  weights = jnp.where(found, jax.nn.one_hot(j, mask.shape[0], dtype=jnp.float32), 0.0)  # [S]
  context = jnp.where(found, values[jnp.minimum(j, mask.shape[0] - 1)], 0.0)  # h_j, not a @ h
  return context, weights, state


def mocha_init(key, sizes):
  """Monotonic attention's parameters, and an additive energy for the chunk (W, U, b, v)."""
  k_m, k_c = jax.random.split(key)
  return {"monotonic": init(k_m, sizes), "chunk": additive.init(k_c, sizes)}


def mocha_prepare_keys(params, states, summary):
  """keys [S, 2 attention]: the monotonic energy's V h_j + b, then the chunk energy's."""
  return jnp.concatenate([additive.prepare_keys(params["monotonic"], states, summary),
                          additive.prepare_keys(params["chunk"], states, summary)], axis=-1)


def _monotonic_columns(params) -> int:
  """How many leading columns of a MoChA key row are the monotonic energy's V h_j + b;
  the rest are the chunk energy's U h_j + b (mocha_prepare_keys)."""
  return params["chunk"]["query"]["kernel"].shape[1]


def _chunks(ends, width, mask):
  """Positions [..., w] of the chunks of `width` ending at `ends` [...], clipped into the
  source, and which of them are real (inside it and not padding)."""
  positions = ends[..., None] - (width - 1) + jnp.arange(width)  # [..., w]
  inside = jnp.clip(positions, 0, mask.shape[0] - 1)
  return inside, (positions >= 0) & mask[inside]


def chunkwise_weights(alignment, energy, mask, width):
  """beta_ij = sum_{k=j}^{j+w-1} alpha_ik exp(u_ij) / sum_{l=k-w+1}^{k} exp(u_il) [S]
  (Chiu & Raffel 2018: the expected chunkwise weights) from alpha_i [S] and the chunk
  energies u_i [S]: each chunk's softmax formed over its own w positions (no division by
  a moving sum that can underflow), then spread by alpha."""
  positions, real = _chunks(jnp.arange(mask.shape[0]), width, mask)  # [S, w]
  per_chunk = jax.vmap(normalisers.masked_softmax)(energy[positions], real)  # [S, w]
  return jnp.zeros(mask.shape, jnp.float32).at[positions].add(alignment[:, None] * per_chunk)


def mocha_attend_expected(params, query, keys, values, mask, state, noise, window):
  """Training: alpha_i as monotonic attention's, the chunk energy u_ij = v^T tanh(W q +
  U h_j + b), weights beta_i = chunkwise_weights, c_i = sum_j beta_ij h_j."""
  size = _monotonic_columns(params)
  monotonic_keys, chunk_keys = keys[:, :size], keys[:, size:]  # [S, attention] each
  alignment = _expected(params["monotonic"], query, monotonic_keys, mask, state,
                                  noise)  # [S]
  weights = chunkwise_weights(alignment, additive.score(params["chunk"], query, chunk_keys),
                              mask, window)  # [S]
  return weights @ values, weights, state._replace(alignment=alignment)


def mocha_attend_hard(params, query, keys, values, mask, state, noise, window):
  """Searches (Chiu & Raffel Algorithm 1): stop at t_i as hard monotonic attention does,
  then a softmax of u over the chunk h_{t_i-w+1..t_i}: w chunk energies a step."""
  del noise
  size = _monotonic_columns(params)
  j, found, state = _hard_stop(params["monotonic"], query, keys, mask, state, slice(0, size))
  positions, real = _chunks(j, window, mask)  # [w]
  energy = additive.tanh_scores(params["chunk"]["v"], keys[positions, size:],
                        layers.dense(params["chunk"]["query"], query))  # [w]
  chunk = normalisers.masked_softmax(energy, real & found)  # [w]
  weights = jnp.zeros(mask.shape, jnp.float32).at[positions].add(chunk)  # [S]
  return chunk @ values[positions], weights, state
