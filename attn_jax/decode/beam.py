"""Beam search as one `lax.while_loop` over a NamedTuple state, sentences streaming through slots.

Each step extends every live hypothesis by every token and keeps the 2k best
candidates (k = beam size): those ending in EOS compete with the finished
hypotheses, ranked by the GNMT length-normalised score
    s(Y) = log P(Y | X) / lp(Y),  lp(Y) = ((5 + |Y|) / 6) ** alpha  (Wu et al. 2016, eq. 14);
the best k of the others stay live. As in fairseq, only EOS candidates among
the top k finish, so beam size 1 is greedy search. The search does not stop when
the top hypothesis ends: it stops at max_len, or when no live hypothesis can
still beat the best finished one, the hypothesis it returns (a finished hypothesis
comes from one (live hypothesis, EOS) pair, so none is counted twice). The encoder
runs once per sentence and its memory is tiled to the beam.

The search holds `slots` sentences at once. A sentence leaves its slot as soon as
it cannot improve, and the next one takes it, so the step's work goes to sentences
still searching rather than to a batch waiting for its slowest member (on Multi30k
with 64 sentences a batch, about half of those steps were spent on sentences already
done).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.config import BOS_ID, EOS_ID, ModelConfig, PAD_ID
from attn_jax.decode.greedy_search import Hypotheses, never_emit
from attn_jax.model import decoder, encoder, seq2seq
from attn_jax.model.selection import argmax
from attn_jax.model.selection import top_k

_NEG = -1.0e9  # score of an empty or impossible slot (finite: keeps arithmetic NaN-free)


class BeamState(NamedTuple):
  step: jax.Array  # int32 [slots]: tokens emitted so far by each slot's live hypotheses
  sentence: jax.Array  # int32 [slots]: the row each slot decodes; `count` when empty
  loaded: jax.Array  # int32 []: rows loaded into a slot so far
  carry: Any  # step function's carry, reordered with the beam; leaves [slots*beam, ...]
  context: Any  # the slot's sentence (attention memory), fixed; leaves [slots*beam, ...]
  live_tokens: jax.Array  # int32 [slots, beam, max_len]
  live_weights: jax.Array  # float32 [slots, beam, max_len, src_len] (src_len 0: not kept)
  live_scores: jax.Array  # float32 [slots, beam]: log P of the prefix; _NEG for empty slots
  best: Hypotheses  # leaves [slots, ...]: each slot's best finished hypothesis so far
  best_scores: jax.Array  # float32 [slots]: its length-normalised score; _NEG for none
  out: Hypotheses  # leaves [rows + 1, ...]: each row's best hypothesis, written when its
  # slot finishes; the extra last row takes the writes of slots with nothing to write


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """GNMT lp(Y) = ((5 + |Y|) / 6) ** alpha; 1 for alpha = 0."""
  return ((5.0 + length) / 6.0) ** alpha


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
  """x [batch, n, ...], index int [batch, m] -> [batch, m, ...]."""
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _where_rows(mask: jax.Array, new: Any, old: Any) -> Any:
  """Per slot, `new` where mask [slots] holds, else `old`: leaves [slots, ...] (`new` may be
  a scalar or broadcast over the slot axis)."""
  return jax.tree.map(
      lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (o.ndim - 1)), n, o), new, old)


def start(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig
          ) -> tuple[decoder.DecoderCarry, decoder.Memory]:
  """The encoder run once per sentence: (the decoder's initial carry, its attention
  memory), leaves [rows, ...]; the search tiles a sentence's to the beam when it loads it."""
  params = seq2seq.in_precision(params, config, rounded=True)
  enc = encoder.encode(params["encoder"], src, src_len, config)
  return (decoder.initial_carry(params["decoder"], enc, config),
          decoder.memory(params["decoder"], enc, config))


StepFn = Callable[[jax.Array, Any, Any], tuple[jax.Array, Any, jax.Array]]


def beam_search(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig,
                max_len: int, beam_size: int, alpha: float = 0.0,
                limits: jax.Array | None = None, with_weights: bool = True,
                slots: int | None = None, count: jax.Array | None = None) -> Hypotheses:
  """The best hypothesis of each sentence under beam search with the model.

  Args:
    params: model parameters.
    src: int32 [rows, src_len]; src_len: int32 [rows].
    config: model options.
    max_len: most tokens per hypothesis, EOS included (static). A hypothesis that
      reaches it without EOS finishes there, as in greedy decoding.
    beam_size: k (static).
    alpha: length-penalty exponent; 0 ranks by log P alone.
    limits: int32 [rows], each <= max_len: per-sentence limits (search.output_limits);
      None means max_len for all.
    with_weights, slots, count: see `search`.
  Returns:
    Hypotheses whose scores are log P of the returned tokens (not normalised).
  """
  params = seq2seq.in_precision(params, config, rounded=True)
  dec_params = params["decoder"]
  carry0, mem0 = start(params, src, src_len, config)
  banned = never_emit(config.tgt_vocab_size)  # [vocab]

  def step_fn(last: jax.Array, dec: decoder.DecoderCarry, mem: decoder.Memory):
    """last int32 [slots*beam] -> (log P [slots*beam, vocab], carry, weights [slots*beam, src_len])."""
    dec, log_p, weights = decoder.next_token_log_probs(dec_params, dec, last, mem, config)
    return log_p + banned, dec, weights

  return search(step_fn, carry0, mem0, src.shape[1], max_len, beam_size, alpha, limits,
                with_weights, slots, count)


def _rows(tree: Any, row: jax.Array, beam: int) -> Any:
  """Row `row` of every leaf [rows, ...], repeated beam times: leaves [beam, ...]."""
  return jax.tree.map(
      lambda x: jnp.repeat(jax.lax.dynamic_index_in_dim(x, row, 0, keepdims=True), beam, 0),
      tree)


class _Search(NamedTuple):
  """What every step of one search shares: the step function, each row's start, the sizes."""
  step_fn: StepFn
  carry0: Any  # leaves [rows, ...]: each sentence's initial carry
  context0: Any  # leaves [rows, ...]: each sentence's context
  beam: int  # k (static)
  rows: int  # sentences in the call (static)
  slots: int  # sentences decoded at once (static)
  width: int  # attention history kept per token: src_width, or 0 (static)
  max_len: int  # most tokens per hypothesis (static)
  alpha: float  # length-penalty exponent
  count: jax.Array  # int32 []: rows [0, count) are decoded
  limits: jax.Array  # int32 [rows + 1]: each row's length limit; 1 for the spare last row
  max_lp: jax.Array  # float32 [rows + 1]: the length penalty at each row's limit


def search(step_fn: StepFn, carry0: Any, context0: Any, src_width: int, max_len: int,
           beam_size: int, alpha: float = 0.0, limits: jax.Array | None = None,
           with_weights: bool = True, slots: int | None = None,
           count: jax.Array | None = None) -> Hypotheses:
  """Beam search over any step function, `slots` sentences at a time.

  Each slot holds one sentence's beam. When a slot's sentence can no longer
  improve, its best hypothesis is written out and the next sentence takes the
  slot, so every step decodes `slots` live sentences until the rows run out, not
  a batch that waits for its longest sentence. Every sentence's search is its own,
  so the result does not depend on `slots`.

  Args:
    step_fn: (last tokens int32 [slots*beam], carry, context) -> (log P
      [slots*beam, vocab], carry, attention weights [slots*beam, src_width]); BOS is fed
      first. The carry is reordered with the hypotheses; the context is not.
    carry0, context0: each sentence's initial carry and context, leaves [rows, ...].
    src_width, max_len, beam_size: static sizes; alpha: length-penalty exponent.
    limits: int32 [rows] per-sentence length limits (<= max_len), or None.
    with_weights: keep the attention history of every hypothesis (static). Without it
      the returned weights are empty, [rows, max_len, 0], and no step gathers and copies
      the [slots, 2k, max_len, src_width] history: the same tokens, lengths and scores.
    slots: sentences decoded at once (static); None: all rows.
    count: int32 []: decode rows [0, count) only; the others get length 0 and PAD.
      None: all rows.
  Returns:
    the best finished hypothesis of each row.
  """
  rows = jax.tree.leaves(carry0)[0].shape[0]
  limits = jnp.full((rows,), max_len, jnp.int32) if limits is None else limits
  limits = jnp.concatenate([limits, jnp.ones((1,), jnp.int32)])  # [rows + 1]: empty slots too
  s = _Search(step_fn=step_fn, carry0=carry0, context0=context0, beam=beam_size, rows=rows,
              slots=rows if slots is None else min(slots, rows),
              width=src_width if with_weights else 0, max_len=max_len, alpha=alpha,
              count=jnp.asarray(rows if count is None else count, jnp.int32), limits=limits,
              max_lp=length_penalty(limits.astype(jnp.float32), alpha))
  final = jax.lax.while_loop(lambda state: jnp.any(state.sentence < s.count),
                             lambda state: _refill(s, _advance(s, state)), _first_state(s))
  return jax.tree.map(lambda x: x[:rows], final.out)


def _first_scores(s: _Search) -> jax.Array:
  """float32 [beam]: a loaded sentence's scores, one live prefix (BOS) and k - 1 empty."""
  return jnp.array([0.0] + [_NEG] * (s.beam - 1), jnp.float32)


def _no_hypotheses(s: _Search, n: int) -> Hypotheses:
  """n empty hypotheses (length 0, PAD, score 0): leaves [n, ...]."""
  return Hypotheses(
      tokens=jnp.full((n, s.max_len), PAD_ID, jnp.int32), lengths=jnp.zeros((n,), jnp.int32),
      scores=jnp.zeros((n,), jnp.float32),
      weights=jnp.zeros((n, s.max_len, s.width), jnp.float32))


def _first_state(s: _Search) -> BeamState:
  """Every slot empty, then the first rows loaded."""
  slots, k = s.slots, s.beam
  empty_rows = lambda tree: jax.tree.map(
      lambda x: jnp.zeros((slots * k,) + x.shape[1:], x.dtype), tree)
  return _refill(s, BeamState(
      step=jnp.zeros((slots,), jnp.int32), sentence=jnp.full((slots,), s.count),
      loaded=jnp.zeros((), jnp.int32), carry=empty_rows(s.carry0),
      context=empty_rows(s.context0),
      live_tokens=jnp.full((slots, k, s.max_len), PAD_ID, jnp.int32),
      live_weights=jnp.zeros((slots, k, s.max_len, s.width), jnp.float32),
      live_scores=jnp.full((slots, k), _NEG, jnp.float32),
      best=_no_hypotheses(s, slots), best_scores=jnp.full((slots,), _NEG, jnp.float32),
      out=_no_hypotheses(s, s.rows + 1)))


def _improvable(s: _Search, state: BeamState) -> jax.Array:
  """bool [slots]: whether a slot's sentence can still gain a better finished hypothesis;
  a live one can at best keep its log P and reach the largest penalty."""
  best_live = state.live_scores[:, 0]  # [slots]
  return ((best_live / s.max_lp[state.sentence] > state.best_scores)
          & (best_live > _NEG / 2) & (state.step < s.limits[state.sentence]))


def _load_row(s: _Search, sentence: jax.Array, slot_order: jax.Array, i: jax.Array,
              trees: tuple[Any, Any]) -> tuple[Any, Any]:
  """(carry, context) with the i-th loading slot's rows [s*k, (s+1)*k) set to its new
  sentence's start, tiled to the beam."""
  slot = slot_order[i]
  new = (_rows(s.carry0, sentence[slot], s.beam), _rows(s.context0, sentence[slot], s.beam))
  return jax.tree.map(lambda x, n: jax.lax.dynamic_update_slice_in_dim(x, n, slot * s.beam, 0),
                      trees, new)


def _refill(s: _Search, state: BeamState) -> BeamState:
  """Writes out the slots whose sentence is done and loads the next rows into them."""
  occupied = state.sentence < s.count  # [slots]
  finished = occupied & ~_improvable(s, state)  # [slots]
  dest = jnp.where(finished, state.sentence, s.rows)  # [slots]: row `rows` is the spare
  out = jax.tree.map(lambda o, b: o.at[dest].set(b), state.out, state.best)
  free = finished | ~occupied  # [slots]
  wanted = state.loaded + jnp.cumsum(free) - 1  # [slots]: the row each free slot would take
  loading = free & (wanted < s.count)  # [slots]
  sentence = jnp.where(loading, wanted, jnp.where(free, s.count, state.sentence))  # [slots]
  slot_order = jnp.nonzero(loading, size=s.slots, fill_value=0)[0]  # [slots]: loading first
  carry, context = jax.lax.fori_loop(
      0, jnp.sum(loading), functools.partial(_load_row, s, sentence, slot_order),
      (state.carry, state.context))
  fresh = lambda new, old: _where_rows(loading, new, old)
  return BeamState(
      step=fresh(0, state.step), sentence=sentence, loaded=state.loaded + jnp.sum(loading),
      carry=carry, context=context,
      live_tokens=fresh(PAD_ID, state.live_tokens), live_weights=fresh(0.0, state.live_weights),
      live_scores=fresh(_first_scores(s), state.live_scores), best=state.best,
      best_scores=fresh(_NEG, state.best_scores), out=out)


class _Candidates(NamedTuple):
  """The 2k best extensions of each slot's live hypotheses at one step."""
  scores: jax.Array  # float32 [slots, 2k]: log P
  origin: jax.Array  # int32 [slots, 2k]: the live hypothesis each extends
  tokens: jax.Array  # int32 [slots, 2k, max_len]: the whole hypothesis
  history: jax.Array  # float32 [slots, 2k, max_len, width]: its attention weights
  ends: jax.Array  # bool [slots, 2k]: ends here (EOS, or the row's length limit)
  carry: Any  # the step function's new carry, leaves [slots*beam, ...], not yet reordered


def _extend(s: _Search, state: BeamState) -> _Candidates:
  """One step of the step function on every live hypothesis; its 2k best extensions."""
  slots, k, width, t = s.slots, s.beam, s.width, state.step  # t: [slots]
  previous = jnp.take_along_axis(state.live_tokens, jnp.maximum(t - 1, 0)[:, None, None],
                                 axis=2)[..., 0]  # [slots, beam]
  last = jnp.where((t == 0)[:, None], BOS_ID, previous)  # [slots, beam]
  log_p, carry, weights = s.step_fn(last.reshape(-1), state.carry, state.context)
  vocab = log_p.shape[-1]
  cand = state.live_scores[..., None] + log_p.reshape(slots, k, vocab)  # [slots, beam, vocab]
  top_scores, top_index = top_k(cand.reshape(slots, k * vocab), 2 * k)  # [slots, 2k]
  origin, token = top_index // vocab, top_index % vocab  # [slots, 2k]
  now = (jnp.arange(s.max_len) == t[:, None])[:, None, :]  # [slots, 1, max_len]: position t
  tokens = jnp.where(now, token[..., None],
                     _gather(state.live_tokens, origin))  # [slots, 2k, max_len]
  step_weights = _gather(weights[:, :width].reshape(slots, k, width),
                         origin)  # [slots, 2k, width]
  history = jnp.where(now[..., None], step_weights[:, :, None, :],
                      _gather(state.live_weights, origin))  # [slots, 2k, max_len, width]
  ends = (token == EOS_ID) | (t + 1 >= s.limits[state.sentence])[:, None]  # [slots, 2k]
  return _Candidates(top_scores, origin, tokens, history, ends, carry)


def _advance(s: _Search, state: BeamState) -> BeamState:
  """One step: the finished candidates compete with each slot's best, the rest stay live."""
  c = _extend(s, state)
  # Finished: the candidates ending now among the top k (as in fairseq, so beam 1 is
  # greedy); the best of them by normalised score replaces the best so far if higher.
  in_top_k = jnp.arange(2 * s.beam) < s.beam  # [2k]
  finishing = c.ends & in_top_k & (c.scores > _NEG / 2)
  length = state.step + 1  # [slots]
  new_done = jnp.where(finishing, c.scores / length_penalty(length, s.alpha)[:, None], _NEG)
  pick = argmax(new_done)[:, None]  # [slots, 1]: the first of equals, as lax.top_k
  pick_scores = _gather(new_done, pick)[:, 0]  # [slots]
  better = pick_scores > state.best_scores  # [slots]; on a tie the earlier one stays
  found = Hypotheses(tokens=_gather(c.tokens, pick)[:, 0], lengths=length,
                     scores=_gather(c.scores, pick)[:, 0],
                     weights=_gather(c.history, pick)[:, 0])
  # Live: the best k candidates that did not end.
  live_scores, keep = jax.lax.top_k(jnp.where(c.ends, _NEG, c.scores), s.beam)  # [slots, k]
  parent = _gather(c.origin, keep)  # [slots, k]: the beam each kept candidate came from
  flat = (jnp.arange(s.slots)[:, None] * s.beam + parent).reshape(-1)  # [slots*beam]
  return state._replace(
      step=length, carry=jax.tree.map(lambda x: x[flat], c.carry),
      live_tokens=_gather(c.tokens, keep), live_weights=_gather(c.history, keep),
      live_scores=live_scores, best=_where_rows(better, found, state.best),
      best_scores=jnp.where(better, pick_scores, state.best_scores))
