"""Decoding: greedy search (beam search builds on the same decoder step)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.config import BOS_ID, EOS_ID, ModelConfig, PAD_ID
from attn_jax.model import decoder, encoder, seq2seq
from attn_jax.model.selection import argmax


def never_emit(vocab_size: int) -> jax.Array:
  """[vocab]: -inf at PAD and BOS, which are never outputs; 0 elsewhere."""
  return jnp.zeros((vocab_size,)).at[jnp.array([PAD_ID, BOS_ID])].set(-jnp.inf)


class GreedyCarry(NamedTuple):
  t: jax.Array  # int32 []: tokens emitted so far (the step about to run)
  dec: decoder.DecoderCarry  # h, c: [batch, hidden]; feed: [batch, feed_size]
  token: jax.Array  # int32 [batch]: y_{t-1}
  finished: jax.Array  # bool [batch]: EOS emitted or the limit reached
  tokens: jax.Array  # int32 [batch, max_len]: outputs so far, PAD after
  scores: jax.Array  # float32 [batch]: sum of log p of the emitted tokens
  lengths: jax.Array  # int32 [batch]: tokens emitted, EOS included
  weights: jax.Array  # float32 [batch, max_len, src_len]: attention per emitted token, 0 after


class Hypotheses(NamedTuple):
  tokens: jax.Array  # int32 [batch, max_len]: EOS-terminated, PAD after
  lengths: jax.Array  # int32 [batch]: tokens up to and including EOS (the limit if none)
  scores: jax.Array  # float32 [batch]: sum of log p of the emitted tokens
  weights: jax.Array  # float32 [batch, max_len, src_len]: attention at each step, 0 after EOS
  # (src_len 0 where the search was asked not to keep them)


def output_limits(src_len: jax.Array, ratio: float, extra: int, max_len: int) -> jax.Array:
  """Most output tokens per sentence, EOS included: min(max_len, ceil(ratio * n) + extra + 1),
  n the source length without EOS. int32 [batch]."""
  words = (src_len - 1).astype(jnp.float32)
  return jnp.minimum(jnp.ceil(ratio * words).astype(jnp.int32) + extra + 1, max_len)


def greedy(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig,
           max_len: int, limits: jax.Array | None = None) -> Hypotheses:
  """Greedy decoding: y_t = argmax p(y | y_<t, x) until EOS or the length limit.

  One `lax.while_loop` that ends as soon as every sentence of the batch has finished.

  Args:
    params: model parameters.
    src: int32 [batch, src_len]; src_len: int32 [batch].
    config: model options.
    max_len: most tokens to emit per sentence, EOS included (a static int).
    limits: int32 [batch], each <= max_len: per-sentence limits (output_limits);
      None means max_len for all.
  """
  params = seq2seq.in_precision(params, config, rounded=True)  # rounded once, not every step
  enc = encoder.encode(params["encoder"], src, src_len, config)
  dec_params = params["decoder"]
  mem = decoder.memory(dec_params, enc, config)
  batch = src.shape[0]
  banned = never_emit(config.tgt_vocab_size)  # [vocab]

  limits = jnp.full((batch,), max_len, jnp.int32) if limits is None else limits

  def body(carry: GreedyCarry) -> GreedyCarry:
    t = carry.t
    dec, log_p, weights = decoder.next_token_log_probs(dec_params, carry.dec, carry.token, mem,
                                                       config)  # log_p [batch, vocab]
    token = argmax(log_p + banned)  # int32 [batch]
    live = ~carry.finished
    score = jnp.where(live, jnp.take_along_axis(log_p, token[:, None], axis=-1)[:, 0], 0.0)
    token = jnp.where(live, token, PAD_ID)
    weights = jnp.where(live[:, None], weights, 0.0)  # [batch, src_len]
    return GreedyCarry(
        t=t + 1, dec=dec, token=token,
        finished=carry.finished | (token == EOS_ID) | (t + 1 >= limits),
        tokens=carry.tokens.at[:, t].set(token), scores=carry.scores + score,
        lengths=carry.lengths + live.astype(jnp.int32),
        weights=carry.weights.at[:, t].set(weights))

  def running(carry: GreedyCarry) -> jax.Array:  # stop as soon as every sentence is done
    return (carry.t < max_len) & ~jnp.all(carry.finished)

  start = GreedyCarry(t=jnp.zeros((), jnp.int32),
                      dec=decoder.initial_carry(dec_params, enc, config),
                      token=jnp.full((batch,), BOS_ID, jnp.int32),
                      finished=jnp.zeros((batch,), bool),
                      tokens=jnp.full((batch, max_len), PAD_ID, jnp.int32),
                      scores=jnp.zeros((batch,), jnp.float32),
                      lengths=jnp.zeros((batch,), jnp.int32),
                      weights=jnp.zeros((batch, max_len, src.shape[1]), jnp.float32))
  end = jax.lax.while_loop(running, body, start)
  return Hypotheses(tokens=end.tokens, lengths=end.lengths, scores=end.scores,
                    weights=end.weights)
