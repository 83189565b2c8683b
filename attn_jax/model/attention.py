"""Attention variants and the one registry that names them.

Every variant is written for ONE example and vmapped over the batch by the
decoder. A variant has these pure functions:

* ``init(key, sizes: Sizes) -> params``
* ``prepare_keys(params, states [S, A], summary [A]) -> keys``: everything that
  depends on the source alone (U k, W k), computed once per sentence before
  the decoder's time loop and passed in explicitly at every step.
* ``attend(params, query [H], keys, values [S, V], mask [S], t [], window) ->
  (context [V], weights [S])``; t is the decoder step (0 for the first output
  token) and `window` the local half-width D (a static int); global variants
  ignore both.

dot and scaled_dot have no parameters, so they need encoder states of the
decoder's size (with a bidirectional encoder, half the decoder's units per
direction: ModelConfig.encoder_size; config.needs_equal_sizes names them);
general is q^T W k for any sizes. Matmul FLOPs are counted by tracing these
functions (perf/flops.py), so nothing here is written for the count.

Global variants score every source position with a ``score(params, query, keys)
-> [S]`` function. The local variants of Luong et al. (2015, section 3.2) wrap
any score: ``local_m_<score>`` (monotonic, p_t = t) and ``local_p_<score>``
(predictive, p_t = S sigmoid(v_p^T tanh(W_p h_t)), eq. 9, weights times a
Gaussian of sigma = D/2, eq. 10) attend within [p_t - D, p_t + D].

``sparsemax_<score>`` and ``entmax15_<score>`` put a sparse normaliser in place of
the softmax of any global score (sparse_normalisers.py: Martins & Astudillo 2016;
Peters, Niculae & Martins 2019 with alpha = 1.5): weights exactly 0 at real positions
too, still summing to 1.

``multihead_additive`` and ``multihead_scaled_dot`` (Chen et al. 2018, RNMT+;
Vaswani et al. 2017, eq. 1 per head) split the projections into Sizes.heads heads, each
with its own softmax; the context is the concatenation of the heads' contexts over
per-head value projections (W^V, so it keeps the key size) and the weights returned are
the heads' mean (``Variant.heads`` gives each head's, for the evaluation).

Three variants carry a state from one decoder step to the next (``Variant.recurrence``;
the decoder keeps it in its scan carry and beam search reorders it with the
hypotheses): ``coverage_additive`` (Tu et al. 2016; See et al. 2017, eq. 11) adds
w_c cov_j, the weight position j received so far, to the additive score, and
``monotonic`` (Raffel et al. 2017) attends by a left-to-right stop-or-move choice: the
expected alignment while training and hard monotonic attention in searches, which
advances through each source position once per sentence (linear time); ``mocha``
(Chiu & Raffel 2018) adds a softmax over the chunk of `window` positions that ends where
monotonic attention stops.
``step_fn`` gives every variant the same per-step signature, state included.

Scores of padded positions are masked before the softmax, so padding gets
weight exactly 0; the weights of a global variant sum to 1.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from attn_jax import config as config_lib
from attn_jax.model import layers, sparse_normalisers

_MASKED = -1e30  # exp(_MASKED - max) underflows to exactly 0 in float32


class Sizes(NamedTuple):
  query: int  # H: the decoder state
  key: int  # A: an encoder state (keys and values)
  attention: int  # inner size: additive's W q + U k, local-p's W_p
  positions: int  # source positions the location variant scores (its W_a has this many rows)
  heads: int = 1  # multi-head variants: heads, dividing `attention` and `key`


Score = Callable[[dict, jax.Array, jax.Array], jax.Array]  # (params, query [H], keys) -> [S]


class Recurrence(NamedTuple):
  """What a variant whose weights depend on its own earlier weights adds. Its attend
  functions take and return a per-example state:
  (params, query [H], keys, values [S, V], mask [S], state, noise [S] or [0], window)
  -> (context [V], weights [S], state); window: the static Variant.attend argument."""
  init_state: Callable[[jax.Array], Any]  # mask [S] -> the state before the first output token
  attend: Callable[..., tuple]  # teacher-forced training and evaluation
  search: Callable[..., tuple] | None = None  # searches' attend; None: the same as `attend`
  noisy: bool = False  # takes noise [S] ~ N(0, 1) at every training step


class Variant(NamedTuple):
  init: Callable[[jax.Array, Sizes], dict]
  prepare_keys: Callable[[dict, jax.Array, jax.Array], jax.Array]
  attend: Callable[..., tuple[jax.Array, jax.Array]]  # with a recurrence: from its first state
  score: Score | None = None  # global scoring, which the local variants reuse
  has_weights: bool = True  # False for the fixed-context baseline
  recurrence: Recurrence | None = None  # state carried across decoder steps
  heads: Callable[..., tuple[jax.Array, jax.Array]] | None = None  # multi-head: attend()
  # with every head's weights [N, S] in place of their mean


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """scores [S], mask [S] bool -> weights [S]: softmax over mask, exactly 0 elsewhere."""
  scores = jnp.where(mask, scores, _MASKED)
  weights = jax.nn.softmax(scores)
  return jnp.where(mask, weights, 0.0)


Normaliser = Callable[[jax.Array, jax.Array], jax.Array]  # (scores [S], mask [S]) -> weights [S]


def _attend_with(score: Score, normalise: Normaliser = masked_softmax):
  """Builds a global attend() from a score function: `normalise` (softmax unless given)
  over all real positions."""
  def attend(params, query, keys, values, mask, t, window):
    del t, window
    weights = normalise(score(params, query, keys), mask)  # [S]
    context = weights @ values  # [V]
    return context, weights
  return attend


def _global(init, prepare_keys, score: Score) -> Variant:
  return Variant(init, prepare_keys, _attend_with(score), score)


# -- none: the RNNencdec baseline (Cho et al. 2014) ---------------------------

def _none_init(key, sizes):
  del key, sizes
  return {}


def _none_prepare(params, states, summary):
  del params, states
  return summary[None, :]  # [1, A]: the one fixed context vector


def _none_attend(params, query, keys, values, mask, t, window):
  """c_t = c for every t: the encoder's final state, whatever the query."""
  del params, query, values, t, window
  return keys[0], jnp.zeros(mask.shape, jnp.float32)


# -- dot, scaled dot, general (Luong et al. 2015, eq. 8) ----------------------

def _dot_init(key, sizes):
  """No parameters: q . k needs keys of the query's size (ModelConfig checks it)."""
  del key
  if sizes.key != sizes.query:
    raise ValueError(f"dot attention needs equal query and key sizes, got {sizes}")
  return {}


def _general_init(key, sizes):
  return {"W": layers.dense_init(key, sizes.key, sizes.query, bias=False)}


def _raw_keys(params, states, summary):
  """keys [S, H] = the encoder states themselves."""
  del params, summary
  return states  # [S, H]


def _project_keys(params, states, summary):
  """keys [S, H] = W k for every source position, once per sentence."""
  del summary
  return layers.dense(params["W"], states)  # [S, H]


def dot_score(params, query, keys):
  """score(q, k_j) = q . k_j  (Luong eq. 8, "dot")."""
  del params
  return keys @ query  # [S]


def scaled_dot_score(params, query, keys):
  """score(q, k_j) = q . k_j / sqrt(d)  (Vaswani et al. 2017, eq. 1)."""
  del params
  return keys @ query / math.sqrt(query.shape[-1])  # [S]


# -- additive / concat (Bahdanau et al. 2014, eq. 6) ---------------------------

def _additive_init(key, sizes):
  k_q, k_k, k_v = jax.random.split(key, 3)
  return {
      "query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),  # W
      "key": layers.dense_init(k_k, sizes.key, sizes.attention),  # U, b
      "v": layers.dense_init(k_v, sizes.attention, 1, bias=False),  # v
  }


def _additive_prepare(params, states, summary):
  del summary
  return layers.dense(params["key"], states)  # U k_j + b  [S, attention]


@jax.checkpoint
def _tanh_scores(v_params, keys, query_proj):
  """v^T tanh(U k_j + b + W q) [S] from keys [S, attention] and W q [attention].

  Rematerialised: the backward pass recomputes the tanh instead of keeping it, so a
  teacher-forced scan stores W q [attention] per step, not [S, attention].
  """
  hidden = jnp.tanh(keys + query_proj)  # [S, attention]
  return layers.dense(v_params, hidden)[:, 0]  # [S]


def additive_score(params, query, keys):
  """score(q, k_j) = v^T tanh(W q + U k_j + b)  (Bahdanau eq. 6)."""
  return _tanh_scores(params["v"], keys, layers.dense(params["query"], query))  # [S]


# -- location (Luong et al. 2015, section 3.1) ---------------------------------

def _location_init(key, sizes):
  return {"W_a": layers.dense_init(key, sizes.query, sizes.positions, bias=False)}


def _no_keys(params, states, summary):
  del params, summary
  return jnp.zeros((states.shape[0], 0), jnp.float32)  # [S, 0]: the scores ignore the source


def location_score(params, query, keys):
  """score(h_t)_j = (W_a h_t)_j: from the query alone; positions past W_a's rows get none."""
  scores = layers.dense(params["W_a"], query)  # [positions]
  length = keys.shape[0]
  if length > scores.shape[0]:
    scores = jnp.pad(scores, (0, length - scores.shape[0]), constant_values=_MASKED)
  return scores[:length]  # [S]


# -- local attention (Luong et al. 2015, section 3.2) --------------------------

def _windowed(score: Score, params, query, keys, mask, centre, window):
  """(align [S], positions [S]): the softmax of `score` over the real positions s with
  |s - centre| <= window, exactly 0 elsewhere; positions 0..S-1 as floats."""
  positions = jnp.arange(mask.shape[0], dtype=jnp.float32)  # [S]
  near = mask & (jnp.abs(positions - centre) <= window)  # [S]
  return masked_softmax(score(params, query, keys), near), positions


def _local_m(base: Variant) -> Variant:
  """Monotonic alignment: p_t = t (clipped to the last real position), window [p_t - D, p_t + D]."""

  def attend(params, query, keys, values, mask, t, window):
    last = jnp.sum(mask) - 1
    centre = jnp.minimum(t, last).astype(jnp.float32)  # a target longer than its source
    weights, _ = _windowed(base.score, params, query, keys, mask, centre, window)
    return weights @ values, weights  # [V], [S]

  return base._replace(attend=attend)


def _local_p(base: Variant) -> Variant:
  """Predictive alignment: p_t = S sigmoid(v_p^T tanh(W_p h_t)) (eq. 9); weights are the
  windowed softmax times exp(-(s - p_t)^2 / (2 sigma^2)), sigma = D / 2 (eq. 10)."""

  def init(key, sizes):
    k_base, k_w, k_v = jax.random.split(key, 3)
    return {**base.init(k_base, sizes),
            "W_p": layers.dense_init(k_w, sizes.query, sizes.attention, bias=False),
            "v_p": layers.dense_init(k_v, sizes.attention, 1, bias=False)}

  def attend(params, query, keys, values, mask, t, window):
    del t
    length = jnp.sum(mask).astype(jnp.float32)  # S, EOS included
    hidden = jnp.tanh(layers.dense(params["W_p"], query))  # [attention]
    centre = length * jax.nn.sigmoid(layers.dense(params["v_p"], hidden)[0])  # p_t in [0, S]
    align, positions = _windowed(base.score, params, query, keys, mask, centre, window)
    sigma = window / 2.0
    weights = align * jnp.exp(-jnp.square(positions - centre) / (2.0 * sigma**2))  # [S]
    return weights @ values, weights  # [V], [S]

  return base._replace(init=init, attend=attend)


# -- sparse normalisers (Martins & Astudillo 2016; Peters et al. 2019) ---------------

NORMALISERS: dict[str, Normaliser] = {"sparsemax": sparse_normalisers.sparsemax,
                                      "entmax15": sparse_normalisers.entmax15}


def _normalised(base: Variant, normalise: Normaliser) -> Variant:
  """A global variant's score with `normalise` in place of softmax: weights that can be
  exactly 0 at real positions (sparse_normalisers.py)."""
  return base._replace(attend=_attend_with(base.score, normalise))


# -- multi-head attention (Chen et al. 2018; Vaswani et al. 2017, eq. 1 and sec. 3.2.2) ----

def _multihead_init(key, sizes):
  """Per head n of N: query and key projections to attention/N, values projected to key/N
  (W^V, so the concatenated context keeps the key size), and for the additive score v_n."""
  k_q, k_k, k_v, k_s = jax.random.split(key, 4)
  return {"query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),
          "key": layers.dense_init(k_k, sizes.key, sizes.attention),
          "value": layers.dense_init(k_v, sizes.key, sizes.key, bias=False),
          "v": layers.dense_init(k_s, sizes.attention // sizes.heads, sizes.heads, bias=False)}


def _multihead_prepare(params, states, summary):
  """keys [S, attention + key]: U k_j + b of every head, then W^V k_j of every head."""
  del summary
  return jnp.concatenate([layers.dense(params["key"], states),
                          layers.dense(params["value"], states)], axis=-1)


def _multihead(score_heads):
  """attend() of a multi-head variant from score_heads(params, query [H], keys [S, N, d])
  -> scores [N, S]: softmax per head, context = concat_n (sum_j a_nj W^V_n k_j) [key],
  weights = every head's [N, S]; Variant.attend returns their mean [S] (each head's sums
  to 1, so the mean does)."""
  def attend_heads(params, query, keys, values, mask, t, window):
    del values, t, window
    heads = params["v"]["kernel"].shape[1]
    size = params["query"]["kernel"].shape[1]
    length = keys.shape[0]
    k = keys[:, :size].reshape(length, heads, size // heads)  # [S, N, d]
    v = keys[:, size:].reshape(length, heads, -1)  # [S, N, key/N]
    weights = jax.vmap(masked_softmax, in_axes=(0, None))(
        score_heads(params, query, k), mask)  # [N, S]
    context = jnp.einsum("ns,snv->nv", weights, v).reshape(-1)  # [key]
    return context, weights  # [key], [N, S]

  def attend(params, query, keys, values, mask, t, window):
    context, weights = attend_heads(params, query, keys, values, mask, t, window)
    return context, jnp.mean(weights, axis=0)  # [key], [S]
  return attend, attend_heads


def _additive_heads(params, query, keys):
  """v_n^T tanh(W_n q + U_n k_j + b_n) per head (Bahdanau eq. 6 in each of N heads)."""
  heads, d = keys.shape[1], keys.shape[2]
  q = layers.dense(params["query"], query).reshape(heads, d)  # [N, d]
  hidden = jnp.tanh(keys + q[None])  # [S, N, d]
  return jnp.einsum("snd,dn->ns", hidden, params["v"]["kernel"])  # [N, S]


def _scaled_dot_heads(params, query, keys):
  """(W^Q_n q) . (W^K_n k_j) / sqrt(d) per head (Vaswani eq. 1; d = attention / N)."""
  heads, d = keys.shape[1], keys.shape[2]
  q = layers.dense(params["query"], query).reshape(heads, d)  # [N, d]
  return jnp.einsum("nd,snd->ns", q, keys) / math.sqrt(d)  # [N, S]


def _multihead_variant(score_heads) -> Variant:
  attend, attend_heads = _multihead(score_heads)
  return Variant(_multihead_init, _multihead_prepare, attend, heads=attend_heads)


# -- coverage (Tu et al. 2016; See et al. 2017, eq. 10-11) ---------------------

def _coverage_init(key, sizes):
  """Additive attention's W, U, b, v and the coverage weights w_c [attention]."""
  k_a, k_c = jax.random.split(key)
  return {**_additive_init(k_a, sizes),
          "coverage": layers.dense_init(k_c, 1, sizes.attention, bias=False)}  # w_c


@jax.checkpoint
def _coverage_scores(v_params, w_c, keys, query_proj, coverage):
  """v^T tanh(U k_j + b + W q + w_c cov_j) [S]; rematerialised like _tanh_scores."""
  hidden = jnp.tanh(keys + query_proj + coverage[:, None] * w_c)  # [S, attention]
  return layers.dense(v_params, hidden)[:, 0]  # [S]


def _zero_coverage(mask):
  return jnp.zeros(mask.shape, jnp.float32)  # cov_0 [S]


def _coverage_attend(params, query, keys, values, mask, coverage, noise, window):
  """e_j = v^T tanh(W q + U k_j + w_c cov_j + b) (See et al. eq. 11; Tu et al.'s
  linguistic coverage with fertility 1), a = softmax(e), and the state
  cov_{t+1} = cov_t + a_t (See et al. eq. 10: the weights of all earlier steps)."""
  del noise, window
  scores = _coverage_scores(params["v"], params["coverage"]["kernel"][0], keys,
                            layers.dense(params["query"], query), coverage)  # [S]
  weights = masked_softmax(scores, mask)  # [S]
  return weights @ values, weights, coverage + weights  # [V], [S], [S]


# -- monotonic attention (Raffel et al. 2017) ----------------------------------

MONOTONIC_ENERGY_BIAS = -4.0  # r's initial value (Raffel et al. sec. 2.5): stop rarely at first


class MonotonicState(NamedTuple):
  alignment: jax.Array  # float32 [S]: alpha_{i-1}, the expected alignment (training)
  position: jax.Array  # int32 []: t_{i-1}, where hard attention stopped last (searches);
  # the source length once it ran past the end (every later context is then 0)


def _monotonic_init(key, sizes):
  """W (query), V and b (key), v, and the scalars g (= 1/sqrt(attention)) and r."""
  k_q, k_k, k_v = jax.random.split(key, 3)
  return {"query": layers.dense_init(k_q, sizes.query, sizes.attention, bias=False),
          "key": layers.dense_init(k_k, sizes.key, sizes.attention),
          "v": layers.dense_init(k_v, sizes.attention, 1, bias=False),
          "g": jnp.asarray(1.0 / math.sqrt(sizes.attention), jnp.float32),
          "r": jnp.asarray(MONOTONIC_ENERGY_BIAS, jnp.float32)}


def _normalised_v(params):
  """{"kernel": g v / ||v||} [attention, 1] (weight normalisation, Raffel sec. 2.5)."""
  v = params["v"]["kernel"]  # [attention, 1]
  return {"kernel": params["g"] * v / jnp.linalg.norm(v)}


def monotonic_energy(params, query, keys):
  """e_ij = g v^T/||v|| tanh(W s + V h_j + b) + r [S] (Raffel et al. sec. 2.5)."""
  return (_tanh_scores(_normalised_v(params), keys, layers.dense(params["query"], query))
          + params["r"])  # [S]


def _first_state(mask):
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


def _expected_monotonic(params, query, keys, mask, state, noise):
  """alpha_i [S] while training: p_ij = sigmoid(e_ij + noise) (noise ~ N(0, 1) while
  training, sec. 2.5), p = 0 at padding, alpha_i = expected_alignment (eq. 9-12)."""
  energy = monotonic_energy(params, query, keys)  # [S]
  if noise.shape[0]:
    energy = energy + noise
  p = jnp.where(mask, jax.nn.sigmoid(energy), 0.0)  # [S]
  return jnp.where(mask, expected_alignment(p, state.alignment), 0.0)  # [S]


def _monotonic_attend(params, query, keys, values, mask, state, noise, window):
  """Training: alpha_i (_expected_monotonic), c_i = sum_j alpha_ij h_j. The weights sum to
  at most 1: the rest is the chance of having run past the end."""
  del window
  alignment = _expected_monotonic(params, query, keys, mask, state, noise)  # [S]
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


def _monotonic_hard(params, query, keys, values, mask, state, noise, window):
  """Searches: attend to h_j alone where _hard_stop stops; past the end the context is 0."""
  del noise, window
  j, found, state = _hard_stop(params, query, keys, mask, state)
  weights = jnp.where(found, jax.nn.one_hot(j, mask.shape[0], dtype=jnp.float32), 0.0)  # [S]
  context = jnp.where(found, values[jnp.minimum(j, mask.shape[0] - 1)], 0.0)  # h_j, not a @ h
  return context, weights, state


# -- monotonic chunkwise attention (Chiu & Raffel 2018) ------------------------

def _mocha_init(key, sizes):
  """Monotonic attention's parameters, and an additive energy for the chunk (W, U, b, v)."""
  k_m, k_c = jax.random.split(key)
  return {"monotonic": _monotonic_init(k_m, sizes), "chunk": _additive_init(k_c, sizes)}


def _mocha_prepare(params, states, summary):
  """keys [S, 2 attention]: the monotonic energy's V h_j + b, then the chunk energy's."""
  return jnp.concatenate([_additive_prepare(params["monotonic"], states, summary),
                          _additive_prepare(params["chunk"], states, summary)], axis=-1)


def _mocha_keys(params, keys):
  size = params["chunk"]["query"]["kernel"].shape[1]
  return keys[:, :size], keys[:, size:]  # [S, attention] each


def _chunks(ends, width, mask):
  """Positions [..., w] of the chunks of `width` ending at `ends` [...], clipped into the
  source, and which of them are real (inside it and not padding)."""
  positions = ends[..., None] - (width - 1) + jnp.arange(width)  # [..., w]
  inside = jnp.clip(positions, 0, mask.shape[0] - 1)
  return inside, (positions >= 0) & mask[inside]


def chunkwise_weights(alignment, energy, mask, width):
  """beta_ij = sum_{k=j}^{j+w-1} alpha_ik exp(u_ij) / sum_{l=k-w+1}^{k} exp(u_il) [S]
  (Chiu & Raffel 2018: the expected chunkwise weights) from alpha_i [S] and the chunk energies u_i [S]: each
  chunk's softmax formed over its own w positions (no division by a moving sum that
  can underflow), then spread by alpha."""
  positions, real = _chunks(jnp.arange(mask.shape[0]), width, mask)  # [S, w]
  per_chunk = jax.vmap(masked_softmax)(energy[positions], real)  # [S, w]
  return jnp.zeros(mask.shape, jnp.float32).at[positions].add(alignment[:, None] * per_chunk)


def _mocha_attend(params, query, keys, values, mask, state, noise, window):
  """Training: alpha_i as monotonic attention's, the chunk energy u_ij = v^T tanh(W q +
  U h_j + b), weights beta_i = chunkwise_weights, c_i = sum_j beta_ij h_j."""
  monotonic_keys, chunk_keys = _mocha_keys(params, keys)
  alignment = _expected_monotonic(params["monotonic"], query, monotonic_keys, mask, state,
                                  noise)  # [S]
  weights = chunkwise_weights(alignment, additive_score(params["chunk"], query, chunk_keys),
                              mask, window)  # [S]
  return weights @ values, weights, state._replace(alignment=alignment)


def _mocha_hard(params, query, keys, values, mask, state, noise, window):
  """Searches (Chiu & Raffel Algorithm 1): stop at t_i as hard monotonic attention does,
  then a softmax of u over the chunk h_{t_i-w+1..t_i}: w chunk energies a step."""
  del noise
  size = params["chunk"]["query"]["kernel"].shape[1]  # the keys: monotonic's, then the chunk's
  j, found, state = _hard_stop(params["monotonic"], query, keys, mask, state, slice(0, size))
  positions, real = _chunks(j, window, mask)  # [w]
  energy = _tanh_scores(params["chunk"]["v"], keys[positions, size:],
                        layers.dense(params["chunk"]["query"], query))  # [w]
  chunk = masked_softmax(energy, real & found)  # [w]
  weights = jnp.zeros(mask.shape, jnp.float32).at[positions].add(chunk)  # [S]
  return chunk @ values[positions], weights, state


def _recurrent(init, prepare_keys, recurrence: Recurrence) -> Variant:
  """A Variant whose attend() runs the recurrence's first step (from init_state)."""
  def attend(params, query, keys, values, mask, t, window):
    del t
    context, weights, _ = recurrence.attend(params, query, keys, values, mask,
                                            recurrence.init_state(mask), jnp.zeros((0,)),
                                            window)
    return context, weights
  return Variant(init, prepare_keys, attend, recurrence=recurrence)


_GLOBAL: dict[str, Variant] = {
    "dot": _global(_dot_init, _raw_keys, dot_score),
    "scaled_dot": _global(_dot_init, _raw_keys, scaled_dot_score),
    "general": _global(_general_init, _project_keys, dot_score),
    "additive": _global(_additive_init, _additive_prepare, additive_score),
    "location": _global(_location_init, _no_keys, location_score),
}

VARIANTS: dict[str, Variant] = {
    "none": Variant(_none_init, _none_prepare, _none_attend, has_weights=False),
    **_GLOBAL,
    **{f"local_m_{name}": _local_m(v) for name, v in _GLOBAL.items() if name != "location"},
    **{f"local_p_{name}": _local_p(v) for name, v in _GLOBAL.items() if name != "location"},
    **{f"{n}_{name}": _normalised(v, f) for n, f in NORMALISERS.items()
       for name, v in _GLOBAL.items()},
    "multihead_additive": _multihead_variant(_additive_heads),
    "multihead_scaled_dot": _multihead_variant(_scaled_dot_heads),
    "coverage_additive": _recurrent(_coverage_init, _additive_prepare,
                                    Recurrence(_zero_coverage, _coverage_attend)),
    "monotonic": _recurrent(_monotonic_init, _additive_prepare,
                            Recurrence(_first_state, _monotonic_attend, _monotonic_hard,
                                       noisy=True)),
    "mocha": _recurrent(_mocha_init, _mocha_prepare,
                        Recurrence(_first_state, _mocha_attend, _mocha_hard, noisy=True)),
}
LOCAL = tuple(name for name in VARIANTS if name.startswith("local_"))
config_lib.check_registry("attention", tuple(VARIANTS), config_lib.ATTENTIONS)


def initial_state(variant: Variant, mask: jax.Array) -> Any:
  """The state before the first output token, per example: mask [S] -> state (a
  variant without a recurrence: float32 [0])."""
  if variant.recurrence is None:
    return jnp.zeros((0,), jnp.float32)
  return variant.recurrence.init_state(mask)


def step_fn(variant: Variant, window: int = 0, search: bool = False,
            heads: bool = False) -> Callable:
  """Every variant's attention step for one example, with one signature:
  (params, query [H], keys, values [S, V], mask [S], t [], state, noise [S] or [0])
  -> (context [V], weights [S], state). search: the searches' form (hard monotonic);
  heads: a multi-head variant's weights per head [N, S]."""
  rec = variant.recurrence
  if rec is None:
    stateless = variant.heads if heads and variant.heads is not None else variant.attend

    def attend(params, query, keys, values, mask, t, state, noise):
      del noise
      return (*stateless(params, query, keys, values, mask, t, window), state)
    return attend
  fn = rec.search if search and rec.search is not None else rec.attend

  def attend_with_state(params, query, keys, values, mask, t, state, noise):
    del t
    return fn(params, query, keys, values, mask, state, noise, window)
  return attend_with_state


def batched(variant: Variant, window: int = 0, search: bool = False, heads: bool = False
            ) -> tuple[Callable, Callable]:
  """The vmapped (prepare_keys, attend) of a variant: params shared, the rest per example.

  prepare_keys: (params, states [B, S, A], summary [B, A]) -> keys [B, S, ...]
  attend: (params, query [B, H], keys, values [B, S, V], mask [B, S], t [B], state,
           noise [B, S] or [B, 0]) -> (context [B, V], weights [B, S] (heads: [B, N, S]),
          state), state's leaves [B, ...]; `window`, `search` and `heads` (step_fn) are
          bound here (static).
  """
  prepare = jax.vmap(variant.prepare_keys, in_axes=(None, 0, 0))
  attend = jax.vmap(step_fn(variant, window, search, heads),
                    in_axes=(None, 0, 0, 0, 0, 0, 0, 0))
  return prepare, attend
