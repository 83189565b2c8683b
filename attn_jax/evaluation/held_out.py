"""Evaluation: teacher-forced loss and alignment, decoding, and task scores.

Synthetic tasks score exact sequences (`evaluate`); translation scores the
detokenised outputs with sacreBLEU (`translation_scores`) after `decode`.
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jax
import numpy as np

from attn_jax import compiling, memory as memory_lib
from attn_jax.executable_store import ExecutableStore
from attn_jax.data import dataset
from attn_jax.data.pipeline import EvalData
from attn_jax.data.vocab import Vocab
from attn_jax.decode.greedy_search import Hypotheses
from attn_jax.evaluation import bleu, metrics

# Sentences decoded at once by translate and evaluate: on CPUs beam search ran faster with
# 16 than with 64 (experiments/results/speed.md).
DECODE_BATCH_SIZE = 16


class Example(NamedTuple):
  """One decoded evaluation sentence, for plots."""
  src: np.ndarray  # int [src_len]: source ids incl. EOS
  output: np.ndarray  # int [out_len]: output ids incl. EOS (unless cut by the length limit)
  weights: np.ndarray  # float [out_len, src_len]


def no_progress() -> None:
  """The default `progress` callback: progress is not reported (a program's watchdog
  takes one that is)."""


def evaluate(params: dict, batches: Iterable[dataset.Batch], eval_step: Callable,
             greedy: Callable, num_examples: int = 0, has_weights: bool = True,
             progress: Callable[[], None] = no_progress
             ) -> tuple[dict[str, float], list[Example]]:
  """Runs eval_step and greedy decoding over fixed-shape batches (dataset.eval_batches),
  calling `progress` after each batch.

  Returns:
    rates (metrics.summarize of all sums, plus "sequence_accuracy_by_length":
    {"1-5": rate, ...} over source lengths) and the first `num_examples` decoded examples.
  """
  totals: dict[str, float] = {}
  lengths, exact = [], []
  examples: list[Example] = []
  for batch in batches:
    sums = eval_step(params, batch)
    hyp: Hypotheses = greedy(params, batch.src, batch.src_len)
    sums, hyp = jax.device_get((sums, hyp))
    progress()
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
    for key in ("align_hits", "entropy_sum", "zero_weights", "coverage_sum"):
      totals.pop(key, None)
  rates: dict = metrics.summarize(totals)
  buckets = metrics.by_length(np.concatenate(lengths), np.concatenate(exact))
  rates["sequence_accuracy_by_length"] = {k: h / n for k, (h, n) in buckets.items()}
  return rates, examples


def loss_rates(params: dict, ev: EvalData, eval_step: Callable,
               progress: Callable[[], None] = no_progress) -> dict[str, float]:
  """Teacher-forced loss, perplexity, token accuracy and attention entropy over `ev`
  (`progress` called after each batch).

  Alignment accuracy is left out when the data has no gold alignments.
  """
  totals: dict[str, float] = {}
  for _, batch in ev.batches:
    for key, value in jax.device_get(eval_step(params, batch)).items():
      totals[key] = totals.get(key, 0) + value
    progress()
  rates = metrics.summarize(totals)
  if not totals.get("align_count"):
    rates.pop("alignment_accuracy", None)
  return rates


class DecodeCall(NamedTuple):
  """One call of a search: consecutive batches of one width, real rows first."""
  lines: np.ndarray  # int [count]: the line of each real row
  src: np.ndarray  # int32 [batches*batch_size, width]; filler rows (copies of row 0) after count
  src_len: np.ndarray  # int32 [batches*batch_size]


# Batches per search call: the shortest greedy + beam-5 time of 2, 4, 8 and 16
# (experiments/results/speed.md, "Beside the PyTorch peer in one run").
CALL_BATCHES = 8


def _width_groups(ev: EvalData) -> list[list[tuple[np.ndarray, dataset.Batch]]]:
  """The batches of `ev` grouped by width, in order."""
  widths: list[list[tuple[np.ndarray, dataset.Batch]]] = []
  for lines, batch in ev.batches:
    if widths and widths[-1][0][1].src.shape[1] == batch.src.shape[1]:
      widths[-1].append((lines, batch))
    else:
      widths.append([(lines, batch)])
  return widths


def call_shape(width: int, batch_size: int, batches: int = CALL_BATCHES) -> tuple[int, int]:
  """(rows, width) of every search call of sources `width` wide: `batches` batches of
  `batch_size` rows, whatever the input, so the shapes are known before it is."""
  return batches * batch_size, width


def decode_calls(ev: EvalData, batches: int = CALL_BATCHES) -> list[DecodeCall]:
  """The batches of `ev` gathered into calls of `batches` batches of one width, so a
  streaming search (beam.search) refills its slots across batch borders. Every call of a
  width has call_shape's rows (the last padded with filler rows): the call shapes are one
  per width and do not depend on how many sentences the input has."""
  calls = []
  for group in _width_groups(ev):
    calls += [_call(group[i:i + batches], batches) for i in range(0, len(group), batches)]
  return calls


def _call(group: list[tuple[np.ndarray, dataset.Batch]], batches: int) -> DecodeCall:
  lines = np.concatenate([lines for lines, _ in group])  # [count]
  src = np.concatenate([b.src[:len(l)] for l, b in group])  # [count, width]
  src_len = np.concatenate([b.src_len[:len(l)] for l, b in group])  # [count]
  filler = np.zeros(batches * len(group[0][1].src) - len(lines), np.int64)  # row 0 copies
  return DecodeCall(lines, np.concatenate([src, src[filler]]),
                    np.concatenate([src_len, src_len[filler]]))


def compile_shapes(search: Callable, params: dict, shapes: Iterable[tuple[int, int]],
                   memory: memory_lib.HostMemory = memory_lib.NONE,
                   store: ExecutableStore | None = None) -> tuple[Callable, compiling.Compiled]:
  """`search` compiled for every call shape (rows, width) before any runs
  (compiling.compile_per_shape: one compilation per shape, each timed, or loaded from
  `store`), and a function with the search's signature that runs the executable of its
  arguments' shape, for decode. `memory`: the host-memory hooks run after the compilations."""
  compiled = compiling.compile_per_shape(
      search, {(rows, width): (params, np.zeros((rows, width), np.int32),
                               np.zeros(rows, np.int32), np.int32(0))
               for rows, width in shapes}, memory, store)
  return (lambda p, src, src_len, count: compiled.by_shape[src.shape](p, src, src_len, count),
          compiled)


def compile_ahead(search: Callable, params: dict, ev: EvalData, batches: int = CALL_BATCHES,
                  memory: memory_lib.HostMemory = memory_lib.NONE,
                  store: ExecutableStore | None = None) -> tuple[Callable, compiling.Compiled]:
  """compile_shapes for the call shapes of decode_calls(ev, batches)."""
  shapes = {call_shape(b.src.shape[1], len(b.src), batches) for _, b in ev.batches}
  return compile_shapes(search, params, shapes, memory, store)


def decode(params: dict, ev: EvalData, search: Callable, batches: int = CALL_BATCHES,
           progress: Callable[[], None] = no_progress) -> list[Example]:
  """Every sentence of `ev` decoded by search(params, src, src_len, count) (searches.make_search)
  over decode_calls(ev, batches), in line order; `progress` is called after each call."""
  outputs: list[Example | None] = [None] * ev.size
  for call in decode_calls(ev, batches):
    hyp: Hypotheses = jax.device_get(search(params, call.src, call.src_len,
                                            np.int32(len(call.lines))))
    progress()
    for row, line in enumerate(call.lines):
      n, m = int(call.src_len[row]), int(hyp.lengths[row])
      outputs[line] = Example(call.src[row, :n], hyp.tokens[row, :m], hyp.weights[row, :m, :n])
  return outputs


def translation_scores(outputs: list[Example], references: list[str],
                       vocab: Vocab) -> tuple[dict, list[str]]:
  """(bleu.corpus_scores of the detokenised outputs against `references`, the outputs)."""
  hyps = [vocab.decode(o.output) for o in outputs]
  return bleu.corpus_scores(hyps, references), hyps
