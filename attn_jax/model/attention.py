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
-> [S]`` function (additive's, Bahdanau et al. 2014 eq. 6, is in additive.py, which the
coverage, monotonic and MoChA variants build on). The local variants of Luong et al.
(2015, section 3.2) wrap any score: ``local_m_<score>`` (monotonic, p_t = t) and
``local_p_<score>`` (predictive, p_t = S sigmoid(v_p^T tanh(W_p h_t)), eq. 9, weights
times a Gaussian of sigma = D/2, eq. 10) attend within [p_t - D, p_t + D].

``sparsemax_<score>`` and ``entmax15_<score>`` put a sparse normaliser in place of
the softmax of any global score (normalisers.py: Martins & Astudillo 2016;
Peters, Niculae & Martins 2019 with alpha = 1.5): weights exactly 0 at real positions
too, still summing to 1.

``multihead_additive`` and ``multihead_scaled_dot`` (multihead.py: Chen et al. 2018,
RNMT+; Vaswani et al. 2017, eq. 1 per head) split the projections into Sizes.heads heads,
each with its own softmax; the context is the concatenation of the heads' contexts over
per-head value projections (W^V, so it keeps the key size) and the weights returned are
the heads' mean (``Variant.heads`` gives each head's, for the evaluation).

Three variants carry a state from one decoder step to the next (``Variant.recurrence``;
the decoder keeps it in its scan carry and beam search reorders it with the
hypotheses): ``coverage_additive`` (Tu et al. 2016; See et al. 2017, eq. 11) adds
w_c cov_j, the weight position j received so far, to the additive score, and
``monotonic`` (monotonic.py: Raffel et al. 2017) attends by a left-to-right
stop-or-move choice: the expected alignment while training and hard monotonic attention
in searches, which advances through each source position once per sentence (linear
time); ``mocha`` (Chiu & Raffel 2018) adds a softmax over the chunk of `window` positions
that ends where monotonic attention stops.
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
from attn_jax.model import additive, layers, monotonic, multihead, normalisers


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


def _attend_with(score: Score, normalise: normalisers.Normaliser = normalisers.masked_softmax):
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
    scores = jnp.pad(scores, (0, length - scores.shape[0]), constant_values=normalisers.MASKED)
  return scores[:length]  # [S]


# -- local attention (Luong et al. 2015, section 3.2) --------------------------

def _windowed(score: Score, params, query, keys, mask, centre, window):
  """(align [S], positions [S]): the softmax of `score` over the real positions s with
  |s - centre| <= window, exactly 0 elsewhere; positions 0..S-1 as floats."""
  positions = jnp.arange(mask.shape[0], dtype=jnp.float32)  # [S]
  near = mask & (jnp.abs(positions - centre) <= window)  # [S]
  return normalisers.masked_softmax(score(params, query, keys), near), positions


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

NORMALISERS: dict[str, normalisers.Normaliser] = {"sparsemax": normalisers.sparsemax,
                                                  "entmax15": normalisers.entmax15}


def _normalised(base: Variant, normalise: normalisers.Normaliser) -> Variant:
  """A global variant's score with `normalise` in place of softmax: weights that can be
  exactly 0 at real positions (normalisers.py)."""
  return base._replace(attend=_attend_with(base.score, normalise))


def _multihead_variant(score_heads) -> Variant:
  """Heads scored by score_heads(params, query [H], keys [S, N, d]) -> [N, S] (multihead.py)."""
  attend, attend_heads = multihead.attend_functions(score_heads)
  return Variant(multihead.init, multihead.prepare_keys, attend, heads=attend_heads)


# -- coverage (Tu et al. 2016; See et al. 2017, eq. 10-11) ---------------------

def _coverage_init(key, sizes):
  """Additive attention's W, U, b, v and the coverage weights w_c [attention]."""
  k_a, k_c = jax.random.split(key)
  return {**additive.init(k_a, sizes),
          "coverage": layers.dense_init(k_c, 1, sizes.attention, bias=False)}  # w_c


@jax.checkpoint
def _coverage_scores(v_params, w_c, keys, query_proj, coverage):
  """v^T tanh(U k_j + b + W q + w_c cov_j) [S]; rematerialised like additive.tanh_scores."""
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
  weights = normalisers.masked_softmax(scores, mask)  # [S]
  return weights @ values, weights, coverage + weights  # [V], [S], [S]


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
    "additive": _global(additive.init, additive.prepare_keys, additive.score),
    "location": _global(_location_init, _no_keys, location_score),
}

VARIANTS: dict[str, Variant] = {
    "none": Variant(_none_init, _none_prepare, _none_attend, has_weights=False),
    **_GLOBAL,
    **{f"local_m_{name}": _local_m(v) for name, v in _GLOBAL.items() if name != "location"},
    **{f"local_p_{name}": _local_p(v) for name, v in _GLOBAL.items() if name != "location"},
    **{f"{n}_{name}": _normalised(v, f) for n, f in NORMALISERS.items()
       for name, v in _GLOBAL.items()},
    "multihead_additive": _multihead_variant(multihead.additive_scores),
    "multihead_scaled_dot": _multihead_variant(multihead.scaled_dot_scores),
    "coverage_additive": _recurrent(_coverage_init, additive.prepare_keys,
                                    Recurrence(_zero_coverage, _coverage_attend)),
    "monotonic": _recurrent(monotonic.init, additive.prepare_keys,
                            Recurrence(monotonic.first_state, monotonic.attend_expected,
                                       monotonic.attend_hard, noisy=True)),
    "mocha": _recurrent(monotonic.mocha_init, monotonic.mocha_prepare_keys,
                        Recurrence(monotonic.first_state, monotonic.mocha_attend_expected,
                                   monotonic.mocha_attend_hard, noisy=True)),
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
