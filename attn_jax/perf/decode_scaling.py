"""Decoding time against source length, for trained models of any attention variant.

Global attention scores every source position at every output step, so a sentence of
n source and about n target tokens costs O(n^2) in attention; hard monotonic attention
(Raffel et al. 2017, Algorithm 1) computes each energy once per sentence, O(n). To see
it, held-out sources are joined end to end and cut to n tokens (real text, not random
ids), EOS is never emitted (its output bias is -1e9), so every output runs to exactly
n + 1 tokens whatever the variant, and the search is timed per n after its compilation.
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.config import EOS_ID
from attn_jax.data.pipeline import EvalData
from attn_jax.decode import searches
from attn_jax.train import inference


class Timing(NamedTuple):
  length: int  # n: source tokens before EOS; every output has n + 1 tokens
  beam_size: int
  sentences: int
  seconds: float  # median over the repeats of one call decoding every sentence

  @property
  def ms_per_sentence(self) -> float:
    return 1e3 * self.seconds / self.sentences

  @property
  def us_per_output_token(self) -> float:
    return 1e6 * self.seconds / (self.sentences * (self.length + 1))


def long_sources(ev: EvalData, length: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
  """(src int32 [rows, length + 1], src_len int32 [rows]): the held-out sources in line
  order, EOS dropped, joined and cut into `rows` pieces of `length` tokens, EOS appended.
  Raises ValueError if `ev` holds fewer than rows * length source tokens."""
  pieces: list = [None] * ev.size
  for lines, batch in ev.batches:
    for row, line in enumerate(lines):
      pieces[line] = batch.src[row, :batch.src_len[row] - 1]
  stream = np.concatenate(pieces)  # [tokens]
  if len(stream) < rows * length:
    raise ValueError(f"the held-out set has {len(stream)} source tokens, fewer than "
                     f"{rows} x {length}")
  body = stream[:rows * length].reshape(rows, length)  # [rows, length]
  src = np.concatenate([body, np.full((rows, 1), EOS_ID)], axis=1).astype(np.int32)
  return src, np.full((rows,), length + 1, np.int32)


def without_eos(params: dict) -> dict:
  """params whose output layer never picks EOS (its bias -1e9)."""
  output = params["decoder"]["output"]
  bias = output["bias"].at[..., EOS_ID].set(-1e9)
  return {**params, "decoder": {**params["decoder"], "output": {**output, "bias": bias}}}


def time_search(trained: inference.Trained, src: np.ndarray, src_len: np.ndarray,
                beam_size: int, repeats: int = 3) -> Timing:
  """The median time of `repeats` calls of the search (outputs of exactly n + 1 tokens),
  after one untimed call that compiles it."""
  search = searches.make_search(trained.config.model, beam_size, alpha=0.0, ratio=1.0,
                                extra=0, with_weights=False)
  params = without_eos(trained.params)
  src, src_len = jnp.asarray(src), jnp.asarray(src_len)
  jax.block_until_ready(search(params, src, src_len))
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(search(params, src, src_len))
    seconds.append(time.perf_counter() - start)
  return Timing(src.shape[1] - 1, beam_size, src.shape[0], statistics.median(seconds))


def scaling(trained: inference.Trained, ev: EvalData, lengths: tuple[int, ...], rows: int,
            beam_sizes: tuple[int, ...], repeats: int = 3) -> list[Timing]:
  """time_search at every source length and beam size."""
  return [time_search(trained, *long_sources(ev, n, rows), beam, repeats)
          for n in lengths for beam in beam_sizes]
