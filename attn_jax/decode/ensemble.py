"""Decoding with several trained models at once: an ensemble of their next-token distributions.

At every search step each member m runs its own decoder step on the shared
prefix and gives p_m(y_t | y_<t, x); the ensemble's distribution is their mean,
    p(y_t | y_<t, x) = 1/M sum_m p_m(y_t | y_<t, x)
(the probability averaging of the ensembles of Sutskever et al. 2014 and the WMT systems
since), computed in log space as logsumexp_m log p_m - log M. Members may differ
in every model option (width, cell, attention variant) but must share the source
and target vocabularies; each encodes the source once and keeps its own decoder
carry and attention keys. The attention weights returned with a hypothesis are
the members' mean. Search is beam.search over that combined step, so beam size 1
is greedy search with the ensemble, and an ensemble of one model is that model.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from attn_jax.config import ModelConfig
from attn_jax.decode import beam
from attn_jax.decode.greedy_search import Hypotheses, never_emit
from attn_jax.model import decoder, seq2seq


def mean_log_probs(log_ps: jax.Array) -> jax.Array:
  """log of the mean distribution: log_ps [members, ..., vocab] -> [..., vocab]."""
  return jax.nn.logsumexp(log_ps, axis=0) - math.log(log_ps.shape[0])


def check_members(configs: Sequence[ModelConfig]) -> None:
  """Raises ValueError unless the configs can decode together (same vocabularies)."""
  if not configs:
    raise ValueError("an ensemble needs at least one model")
  sizes = {(c.src_vocab_size, c.tgt_vocab_size) for c in configs}
  if len(sizes) > 1:
    raise ValueError(f"ensemble members have different (source, target) vocabulary sizes: "
                     f"{sorted(sizes)}")


def beam_search(params: Sequence[dict], src: jax.Array, src_len: jax.Array,
                configs: Sequence[ModelConfig], max_len: int, beam_size: int,
                alpha: float = 0.0, limits: jax.Array | None = None,
                with_weights: bool = True, slots: int | None = None,
                count: jax.Array | None = None) -> Hypotheses:
  """The best hypothesis of each sentence under beam search with the ensemble.

  Args:
    params: one parameter tree per member.
    src: int32 [rows, src_len]; src_len: int32 [rows].
    configs: one model config per member (static).
    max_len, beam_size, alpha, limits, with_weights, slots, count: as beam.beam_search.
  Returns:
    Hypotheses whose scores are the ensemble's log P of the returned tokens.
  """
  check_members(configs)
  params = [seq2seq.in_precision(p, config, rounded=True) for p, config in zip(params, configs)]
  carries, mems = zip(*(beam.start(p, src, src_len, config)
                        for p, config in zip(params, configs)))  # leaves [rows, ...]
  banned = never_emit(configs[0].tgt_vocab_size)  # [vocab]

  def step_fn(last: jax.Array, decs: tuple, mems: tuple):
    """last int32 [slots*beam] -> (log P [slots*beam, vocab], carries, weights [slots*beam, src_len])."""
    outs = [decoder.next_token_log_probs(p["decoder"], dec, last, mem, config)
            for p, dec, mem, config in zip(params, decs, mems, configs)]
    log_p = mean_log_probs(jnp.stack([o[1] for o in outs]))  # [slots*beam, vocab]
    weights = jnp.mean(jnp.stack([o[2] for o in outs]), axis=0)  # [slots*beam, src_len]
    return log_p + banned, tuple(o[0] for o in outs), weights

  return beam.search(step_fn, carries, mems, src.shape[1], max_len, beam_size, alpha,
                     limits, with_weights, slots, count)
