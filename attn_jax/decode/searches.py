"""The jitted searches: greedy decoding of a batch, and the streaming beam search (greedy
at beam size 1) of one model or an ensemble, compiled once per source shape."""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax

from attn_jax.config import ModelConfig
from attn_jax.decode import beam, ensemble, greedy_search

DEFAULT_BEAM_SIZE = 5  # translate's and evaluate's
DEFAULT_LENGTH_PENALTY = 0.6  # GNMT's alpha (Wu et al. 2016, sec. 7)


def make_greedy(config: ModelConfig, max_len: int):
  """(params, src, src_len) -> greedy_search.Hypotheses, jitted."""
  return jax.jit(functools.partial(greedy_search.greedy, config=config, max_len=max_len))


def max_output_len(src_width: int, ratio: float, extra: int) -> int:
  """The static output width for sources padded to src_width (EOS included)."""
  return int(math.ceil(ratio * (src_width - 1))) + extra + 1


def describe(config: ModelConfig | tuple[ModelConfig, ...], beam_size: int = 1,
             alpha: float = 0.0, ratio: float = 1.5, extra: int = 10,
             with_weights: bool = True, slots: int | None = None) -> str:
  """What make_search with these arguments compiles, as text (an executable store's key)."""
  configs = config if isinstance(config, tuple) else (config,)
  return json.dumps({"search": "beam", "models": [dataclasses.asdict(c) for c in configs],
                     "beam_size": beam_size, "alpha": alpha if beam_size > 1 else 0.0,
                     "ratio": ratio, "extra": extra, "with_weights": with_weights,
                     "slots": slots, "ensemble": isinstance(config, tuple)}, sort_keys=True)


def make_search(config: ModelConfig | tuple[ModelConfig, ...], beam_size: int = 1,
                alpha: float = 0.0, ratio: float = 1.5, extra: int = 10,
                with_weights: bool = True, slots: int | None = None):
  """(params, src, src_len[, count]) -> greedy_search.Hypotheses, jitted once per source shape.

  A tuple of configs decodes with the ensemble of those models (ensemble.py; any
  beam size, 1 included): params is then a tuple of parameter trees, one per config.

  Each sentence may emit at most ceil(ratio * n) + extra tokens and EOS, n its
  source length (greedy_search.output_limits). The rows stream through `slots` beams
  (beam.search; None: all rows at once): a sentence that is done gives its slot to
  the next row; rows from `count` on are not decoded. beam_size 1 is greedy search
  (a beam of one with no length penalty finds greedy's hypotheses, greedy_search.greedy;
  tested); larger sizes rank by the GNMT length penalty with exponent `alpha`.
  with_weights=False returns no attention weights (Hypotheses.weights [rows, max_len, 0])
  and spares beam search copying their history.
  """
  alpha = alpha if beam_size > 1 else 0.0

  @jax.jit
  def run(params: dict, src: jax.Array, src_len: jax.Array,
          count: jax.Array | None = None) -> greedy_search.Hypotheses:
    max_len = max_output_len(src.shape[1], ratio, extra)
    limits = greedy_search.output_limits(src_len, ratio, extra, max_len)  # [rows]
    if isinstance(config, tuple):
      return ensemble.beam_search(params, src, src_len, config, max_len, beam_size, alpha,
                                  limits, with_weights, slots, count)
    return beam.beam_search(params, src, src_len, config, max_len, beam_size, alpha, limits,
                            with_weights, slots, count)

  return run
