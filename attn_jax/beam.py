"""Batched beam search as one `lax.while_loop` over a NamedTuple state.

Each step extends every live hypothesis by every token and keeps the 2k best
candidates (k = beam size): those ending in EOS compete with the finished
hypotheses, ranked by the GNMT length-normalised score
    s(Y) = log P(Y | X) / lp(Y),  lp(Y) = ((5 + |Y|) / 6) ** alpha  (Wu et al. 2016, eq. 14);
the best k of the others stay live. As in fairseq, only EOS candidates among
the top k finish, so beam size 1 is greedy search. The search does not stop when
the top hypothesis ends: it stops at max_len, or when no live hypothesis can
still beat the worst finished one. A finished hypothesis is kept once: each comes
from a distinct (live hypothesis, EOS) pair. The encoder runs once per sentence
and its memory is tiled to the beam.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from attn_jax import decoder, encoder
from attn_jax.config import BOS_ID, EOS_ID, PAD_ID, ModelConfig
from attn_jax.search import Hypotheses, never_emit

_NEG = -1.0e9  # score of an empty or impossible slot (finite: keeps arithmetic NaN-free)


class BeamState(NamedTuple):
  step: jax.Array  # int32 []: tokens emitted so far by live hypotheses
  dec: Any  # decoder carry, leaves [batch*beam, ...] (h, c: [batch*beam, hidden])
  live_tokens: jax.Array  # int32 [batch, beam, max_len]
  live_weights: jax.Array  # float32 [batch, beam, max_len, src_len] (src_len 0: not kept)
  live_scores: jax.Array  # float32 [batch, beam]: log P of the prefix; _NEG for empty slots
  done_tokens: jax.Array  # int32 [batch, beam, max_len]: EOS-terminated, PAD after
  done_weights: jax.Array  # float32 [batch, beam, max_len, src_len]
  done_scores: jax.Array  # float32 [batch, beam]: length-normalised; _NEG for empty slots
  done_logp: jax.Array  # float32 [batch, beam]: log P, unnormalised
  done_lengths: jax.Array  # int32 [batch, beam]: tokens incl. EOS


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """GNMT lp(Y) = ((5 + |Y|) / 6) ** alpha; 1 for alpha = 0."""
  return ((5.0 + length) / 6.0) ** alpha


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
  """x [batch, n, ...], index int [batch, m] -> [batch, m, ...]."""
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _tile(x: jax.Array, beam: int) -> jax.Array:
  """[batch, ...] -> [batch*beam, ...], each row repeated beam times."""
  return jnp.repeat(x, beam, axis=0)


def tiled_start(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig,
                beam: int) -> tuple[decoder.Memory, decoder.DecoderCarry]:
  """The encoder run once per sentence, its attention memory and the decoder's initial
  carry tiled to the beam: leaves [batch*beam, ...]."""
  enc = encoder.encode(params["encoder"], src, src_len, config)
  tiled = lambda tree: jax.tree.map(lambda x: _tile(x, beam), tree)
  return (tiled(decoder.memory(params["decoder"], enc, config)),
          tiled(decoder.initial_carry(params["decoder"], enc, config)))


StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any, jax.Array]]


def beam_search(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig,
                max_len: int, beam_size: int, alpha: float = 0.0,
                limits: jax.Array | None = None, with_weights: bool = True) -> Hypotheses:
  """The best hypothesis of each sentence under beam search with the model.

  Args:
    params: model parameters.
    src: int32 [batch, src_len]; src_len: int32 [batch].
    config: model options.
    max_len: most tokens per hypothesis, EOS included (static). A hypothesis that
      reaches it without EOS finishes there, as in greedy decoding.
    beam_size: k (static).
    alpha: length-penalty exponent; 0 ranks by log P alone.
    limits: int32 [batch], each <= max_len: per-sentence limits (search.output_limits);
      None means max_len for all.
    with_weights: keep each hypothesis's attention weights (static); see `search`.
  Returns:
    Hypotheses whose scores are log P of the returned tokens (not normalised).
  """
  k = beam_size
  dec_params = params["decoder"]
  mem, dec0 = tiled_start(params, src, src_len, config, k)
  banned = never_emit(config.tgt_vocab_size)  # [vocab]

  def step_fn(last: jax.Array, dec: decoder.DecoderCarry):
    """last int32 [batch*beam] -> (log P [batch*beam, vocab], carry, weights [batch*beam, src_len])."""
    dec, log_p, weights = decoder.next_token_log_probs(dec_params, dec, last, mem, config)
    return log_p + banned, dec, weights

  return search(step_fn, dec0, src.shape[0], src.shape[1], max_len, k, alpha, limits,
                with_weights)


def search(step_fn: StepFn, carry0: Any, batch: int, src_width: int, max_len: int,
           beam_size: int, alpha: float = 0.0, limits: jax.Array | None = None,
           with_weights: bool = True) -> Hypotheses:
  """Beam search over any step function.

  Args:
    step_fn: (last tokens int32 [batch*beam], carry) -> (log P [batch*beam, vocab],
      carry, attention weights [batch*beam, src_width]); BOS is fed first.
    carry0: the initial carry, leaves [batch*beam, ...] (rows tiled per beam).
    batch, src_width, max_len, beam_size: static sizes; alpha: length-penalty exponent.
    limits: int32 [batch] per-sentence length limits (<= max_len), or None.
    with_weights: keep the attention history of every hypothesis (static). Without it
      the returned weights are empty, [batch, max_len, 0], and no step gathers and copies
      the [batch, 2k, max_len, src_width] history: the same tokens, lengths and scores.
  Returns:
    the best finished hypothesis of each sentence.
  """
  k = beam_size
  width = src_width if with_weights else 0  # of the kept attention history
  limits = jnp.full((batch,), max_len, jnp.int32) if limits is None else limits
  max_lp = length_penalty(limits.astype(jnp.float32), alpha)  # [batch]
  in_top_k = jnp.arange(2 * k) < k  # [2k]

  def body(state: BeamState) -> BeamState:
    t = state.step
    last = jnp.where(t == 0, BOS_ID, jax.lax.dynamic_index_in_dim(
        state.live_tokens, jnp.maximum(t - 1, 0), 2, keepdims=False))  # [batch, beam]
    log_p, dec, weights = step_fn(last.reshape(-1), state.dec)
    vocab = log_p.shape[-1]
    cand = state.live_scores[..., None] + log_p.reshape(batch, k, vocab)  # [batch, beam, vocab]
    top_scores, top_index = jax.lax.top_k(cand.reshape(batch, k * vocab), 2 * k)  # [batch, 2k]
    origin, token = top_index // vocab, top_index % vocab  # [batch, 2k]
    tokens = _gather(state.live_tokens, origin)  # [batch, 2k, max_len]
    tokens = jax.lax.dynamic_update_index_in_dim(tokens, token, t, 2)
    hist = _gather(state.live_weights, origin)  # [batch, 2k, max_len, width]
    step_weights = _gather(weights[:, :width].reshape(batch, k, width), origin)  # [batch, 2k, width]
    hist = jax.lax.dynamic_update_index_in_dim(hist, step_weights, t, 2)
    ends = (token == EOS_ID) | (t + 1 >= limits)[:, None]  # [batch, 2k]

    # Finished: the old ones and the candidates ending now among the top k (as in
    # fairseq, so beam 1 is greedy), best k by normalised score.
    finishing = ends & in_top_k & (top_scores > _NEG / 2)
    length = t + 1
    new_done = jnp.where(finishing, top_scores / length_penalty(length, alpha), _NEG)
    done_scores, pick = jax.lax.top_k(
        jnp.concatenate([state.done_scores, new_done], axis=1), k)  # [batch, k] of 3k
    cat = lambda old, new: _gather(jnp.concatenate([old, new], axis=1), pick)

    # Live: the best k candidates that did not end.
    live_scores, keep = jax.lax.top_k(jnp.where(ends, _NEG, top_scores), k)  # [batch, k]
    rows = _gather(origin, keep)  # [batch, k]: the beam each kept candidate came from
    flat = (jnp.arange(batch)[:, None] * k + rows).reshape(-1)  # [batch*beam]
    return BeamState(
        step=t + 1, dec=jax.tree.map(lambda x: x[flat], dec),
        live_tokens=_gather(tokens, keep), live_weights=_gather(hist, keep),
        live_scores=live_scores, done_scores=done_scores,
        done_tokens=cat(state.done_tokens, tokens), done_weights=cat(state.done_weights, hist),
        done_logp=cat(state.done_logp, top_scores),
        done_lengths=cat(state.done_lengths, jnp.full((batch, 2 * k), length, jnp.int32)))

  def searching(state: BeamState) -> jax.Array:
    # A live hypothesis can at best keep its log P and reach the largest penalty.
    best_live = state.live_scores[:, 0]  # [batch]
    can_improve = ((best_live / max_lp > state.done_scores[:, -1]) & (best_live > _NEG / 2)
                   & (state.step < limits))
    return jnp.any(can_improve)

  start = BeamState(
      step=jnp.zeros((), jnp.int32), dec=carry0,
      live_tokens=jnp.full((batch, k, max_len), PAD_ID, jnp.int32),
      live_weights=jnp.zeros((batch, k, max_len, width), jnp.float32),
      live_scores=jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1), jnp.float32), (batch, 1)),
      done_tokens=jnp.full((batch, k, max_len), PAD_ID, jnp.int32),
      done_weights=jnp.zeros((batch, k, max_len, width), jnp.float32),
      done_scores=jnp.full((batch, k), _NEG, jnp.float32),
      done_logp=jnp.full((batch, k), _NEG, jnp.float32),
      done_lengths=jnp.zeros((batch, k), jnp.int32))
  final = jax.lax.while_loop(searching, body, start)
  return Hypotheses(tokens=final.done_tokens[:, 0], lengths=final.done_lengths[:, 0],
                    scores=final.done_logp[:, 0], weights=final.done_weights[:, 0])
