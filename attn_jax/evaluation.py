"""Evaluation over a dataset: teacher-forced loss and alignment, greedy sequence accuracy."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from attn_jax import data, metrics
from attn_jax.search import Hypotheses


class Example(NamedTuple):
  """One decoded evaluation sentence, for plots."""
  src: np.ndarray  # int [src_len]: source ids incl. EOS
  output: np.ndarray  # int [out_len]: greedy output ids incl. EOS
  weights: np.ndarray  # float [out_len, src_len]


def evaluate(params: dict, ds: data.Dataset, batch_size: int, eval_step: Callable,
             greedy: Callable, num_examples: int = 0,
             has_weights: bool = True) -> tuple[dict[str, float], list[Example]]:
  """Runs eval_step and greedy decoding over `ds` in fixed-shape batches.

  Returns:
    rates (metrics.summarize of all sums, plus "sequence_accuracy_by_length":
    {"1-5": rate, ...} over source lengths) and the first `num_examples` decoded examples.
  """
  totals: dict[str, float] = {}
  lengths, exact = [], []
  examples: list[Example] = []
  for batch in data.eval_batches(ds, batch_size):
    sums = eval_step(params, batch)
    hyp: Hypotheses = greedy(params, batch.src, batch.src_len)
    sums, hyp = jax.device_get((sums, hyp))
    sums.update(metrics.sequence_sums(hyp.tokens, hyp.lengths, batch.tgt_out, batch.tgt_len))
    real = batch.tgt_len > 0
    lengths.append(batch.src_len[real] - 1)
    exact.append(metrics.exact_matches(hyp.tokens, hyp.lengths, batch.tgt_out, batch.tgt_len)[real])
    for key, value in sums.items():
      totals[key] = totals.get(key, 0) + value
    for i in range(min(num_examples - len(examples), int(np.sum(real)))):
      n, m = int(batch.src_len[i]), int(hyp.lengths[i])
      examples.append(Example(batch.src[i, :n], hyp.tokens[i, :m], hyp.weights[i, :m, :n]))
  if not has_weights:
    for key in ("align_hits", "entropy_sum"):
      totals.pop(key, None)
  rates: dict = metrics.summarize(totals)
  buckets = metrics.by_length(np.concatenate(lengths), np.concatenate(exact))
  rates["sequence_accuracy_by_length"] = {k: h / n for k, (h, n) in buckets.items()}
  return rates, examples
