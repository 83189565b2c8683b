"""Attention variants side by side: N seeds each, confidence intervals, significance.

`compare` trains every variant (each as one --num_seeds program, resumable), then
scores each seed's best checkpoint on one held-out split and writes, under the
comparison's workdir W:

* W/report.md: a row per variant: parameters, the main metric's mean and 95 %
  Student-t confidence interval over seeds (translation: tokenised lowercased BLEU
  and sacreBLEU; synthetic tasks: exact-sequence accuracy), alignment accuracy and
  AER against the gold alignments (synthetic), attention entropy, training tokens/s,
  and the paired bootstrap p-value of each variant against the baseline; then the
  `query` x `input_feeding` ablation of the best variant;
* W/bleu_by_length.png: the main metric per source-length bucket (Bahdanau et al.
  2014, Fig. 2), one line per variant;
* W/attention_grid.png: one sentence's attention under every variant;
* W/beam_sweep.md: beam size x length penalty for the best variant on the
  validation data (Britz et al. 2017, Table 7).

Every run lives in W/<name>/ with its own checkpoints, and its scores are kept in
W/<name>/scores.json, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Callable, NamedTuple

import numpy as np

from attn_jax import atomic_write, config as config_lib, memory as memory_lib
from attn_jax.config import EOS_ID, Config, ConfigError
from attn_jax.data import pipeline, translation
from attn_jax.data.pipeline import EvalData
from attn_jax.decode import searches
from attn_jax.evaluation import bleu, held_out, metrics, plots
from attn_jax.model import attention, seq2seq
from attn_jax.study import report
from attn_jax.train import early_stopping, inference, loop, steps, writer_lock
from attn_jax.train.runlog import read_records

LENGTH_BUCKET = 10  # source words (translation) or symbols (synthetic) per length bucket


class Scores(NamedTuple):
  """One model's predictions on a split, scored."""
  scores: dict[str, float]  # main metric(s), alignment accuracy and AER (synthetic), entropy
  per_sentence: list  # translation: detokenised outputs; synthetic: 1/0 exact matches
  by_length: dict[str, float]  # source-length bucket ("1-10", ...) -> main metric


def _references(ev: EvalData) -> list[np.ndarray]:
  """The target ids (EOS included) of every sentence of `ev`, in line order."""
  refs: list = [None] * ev.size
  for lines, batch in ev.batches:
    for row, line in enumerate(lines):
      refs[line] = batch.tgt_out[row, :batch.tgt_len[row]]
  return refs


# Teacher-forced attention measures a comparison keeps (metrics.summarize's names).
ATTENTION_RATES = ("attention_entropy", "zero_weight_share", "coverage_overlap",
                   "best_head_alignment_accuracy", "best_head_entropy")
REPEAT_N = 2  # over-translation: repeated output bigrams beyond the reference's


def translation_adequacy(outputs: list[held_out.Example], refs: list[np.ndarray],
                         has_weights: bool) -> dict[str, float]:
  """Over- and under-translation (Tu et al. 2016) of decoded outputs: the share of output
  n-grams repeated beyond the reference (metrics.repeated_ngrams), and with attention the
  share of source tokens (EOS excluded) that no output step attends to most
  (metrics.unattended_sources)."""
  strip = lambda ids: [i for i in np.asarray(ids).tolist() if i != EOS_ID]
  repeats = np.sum([metrics.repeated_ngrams(strip(o.output), strip(r), REPEAT_N)
                    for o, r in zip(outputs, refs)], axis=0)
  out = {"repeated_ngrams": float(repeats[0] / max(repeats[1], 1))}
  if has_weights:
    unseen = np.sum([metrics.unattended_sources(np.asarray(o.weights)[:, :len(o.src) - 1])
                     for o in outputs if len(o.src) > 1 and len(o.output)], axis=0)
    out["unattended_sources"] = float(unseen[0] / max(unseen[1], 1))
  return out


def score(trained: inference.Trained, ev: EvalData, search: Callable,
          eval_step: Callable | None, progress: Callable[[], None] = held_out.no_progress
          ) -> tuple[Scores, list[held_out.Example]]:
  """Decodes `ev` with `search` and scores it; also returns the decoded examples. Without
  an `eval_step` (steps.make_eval_step) the teacher-forced attention scores are left out."""
  config = trained.config
  outputs = held_out.decode(trained.params, ev, search, progress=progress)
  has_weights = attention.VARIANTS[config.model.attention].has_weights
  out: dict[str, float] = {}
  if eval_step is not None and has_weights:
    rates = held_out.loss_rates(trained.params, ev, eval_step, progress)
    out.update({k: rates[k] for k in ATTENTION_RATES if k in rates})
    if "alignment_accuracy" in rates:
      # One gold link and one (argmax) predicted link per target token: precision =
      # recall = alignment accuracy, so AER (Och & Ney 2003, sure links) = 1 - accuracy.
      out["alignment_accuracy"] = rates["alignment_accuracy"]
      out["aer"] = 1.0 - rates["alignment_accuracy"]
  if eval_step is not None:
    out.update(translation_adequacy(outputs, _references(ev), has_weights))
  if ev.text is not None:
    corpus, hyps = held_out.translation_scores(outputs, ev.text.tgt, trained.vocabs.tgt)
    out.update({k: v for k, v in corpus.items() if isinstance(v, float)})
    rows = bleu.bleu_by_length(hyps, ev.text.tgt, [len(s.split()) for s in ev.text.src],
                               edges=tuple(range(LENGTH_BUCKET, 60, LENGTH_BUCKET)))
    return Scores(out, hyps, {r["bucket"]: r["bleu_tok_lc"] for r in rows}), outputs
  exact = [int(np.array_equal(o.output, r)) for o, r in zip(outputs, _references(ev))]
  out["sequence_accuracy"] = float(np.mean(exact))
  lengths = np.asarray([len(o.src) - 1 for o in outputs])
  buckets = metrics.by_length(lengths, np.asarray(exact), LENGTH_BUCKET)
  return Scores(out, exact, {k: h / n for k, (h, n) in buckets.items()}), outputs


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a comparison trains and how it scores."""
  variants: tuple[str, ...]  # attention variants (attention.VARIANTS)
  baseline: str  # the variant every other is tested against
  split: str  # translation: the split scored, e.g. test_2016_flickr; synthetic: its eval set
  beam_size: int = 5
  length_penalty: float = 1.0
  beam_sizes: tuple[int, ...] = (1, 2, 5, 10, 25)  # the sweep (on validation data)
  length_penalties: tuple[float, ...] = (0.0, 0.6, 1.0)
  ablation: bool = True  # also train query x input_feeding for the best variant
  batch_size: int = 64  # sentences decoded together


def _run_config(base: Config, **model_changes) -> Config:
  return dataclasses.replace(base, model=dataclasses.replace(base.model, **model_changes))


def _variant_configs(base: Config, variants: tuple[str, ...]) -> dict[str, Config]:
  """Each variant's config, all checked before anything trains (ConfigError names it)."""
  configs = {}
  for variant in variants:
    try:
      configs[variant] = _run_config(base, attention=variant)
    except ConfigError as e:
      raise ConfigError(f"variants: {variant}: {str(e).partition(': ')[2]}") from None
  return configs


def eval_data(trained: inference.Trained, split: str, batch_size: int,
               workdir: str) -> EvalData:
  """The sentences to score: `split` of the corpus (translation), or the synthetic eval set."""
  d = trained.config.data
  if d.task != "translation":
    return pipeline.load(d, batch_size, workdir).eval
  loaded = translation.load_split(d.data_dir, split, d.src_lang, d.tgt_lang, trained.vocabs,
                                  pipeline.bucket_widths(d.max_len))
  return pipeline.eval_data(loaded, batch_size)


def _example_line(ev: EvalData, length: int = 12) -> int:
  """The first sentence whose source (ids, EOS included) is closest to `length`: the same
  sentence for every run of one data config."""
  lengths = np.zeros(ev.size, np.int64)
  for lines, batch in ev.batches:
    lengths[lines] = batch.src_len[:len(lines)]
  return int(np.argmin(np.abs(lengths - length)))


def _train_rate(workdir: str) -> float:
  """Median training tokens/s (all seeds together) over the run's log steps."""
  rates = [r["tokens_per_sec"] for r in read_records(os.path.join(workdir, "metrics.jsonl"))
           if r["split"] == "train" and "tokens_per_sec" in r]
  return float(np.median(rates)) if rates else float("nan")


# Raised when score() measures something new, so that saved scores are measured again.
SCORES_VERSION = 2


def _settings(config: Config, plan: Plan) -> dict:
  return {"config": config.to_dict(), "split": plan.split, "beam_size": plan.beam_size,
          "length_penalty": plan.length_penalty, "scores_version": SCORES_VERSION}


def _cached(workdir: str, settings: dict) -> dict | None:
  """The scores saved in workdir/scores.json if they were made with these settings (a
  config differing only in fields that leave results alone counts as the same)."""
  path = os.path.join(workdir, "scores.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    cached = json.load(f)
  saved = cached.get("settings", {})
  same = ({k: v for k, v in saved.items() if k != "config"}
          == {k: v for k, v in settings.items() if k != "config"}
          and "config" in saved
          and set(config_lib.differing_fields(saved["config"], settings["config"]))
          <= config_lib.RESULT_NEUTRAL)
  return cached if same else None


def score_run(workdir: str, settings: dict, plan: Plan,
              progress: Callable[[], None] = held_out.no_progress) -> dict:
  """Scores every seed of the run in `workdir` at its best checkpoint on plan.split.

  Returns (and writes to workdir/scores.json) {"settings", "step", "params",
  "tokens_per_sec", "seeds": [{"scores", "per_sentence", "by_length"}, ...],
  "example": {"line", "src", "output", "weights"} (seed 0)}.
  """
  first = inference.load(workdir, "best", 0, translation_only=False)
  ev = eval_data(first, plan.split, plan.batch_size, workdir)
  search = searches.make_search(first.config.model, plan.beam_size, plan.length_penalty,
                             slots=ev.batch_size)
  eval_step = steps.make_eval_step(first.config.model)
  line = _example_line(ev)
  record = {"settings": settings, "step": first.step, "params": seq2seq.count_params(first.params),
            "tokens_per_sec": _train_rate(workdir), "seeds": []}
  for k in range(first.num_seeds):
    trained = first if k == 0 else inference.load(workdir, "best", k, translation_only=False)
    scores, outputs = score(trained, ev, search, eval_step, progress)
    record["seeds"].append(scores._asdict())
    if k == 0:
      src_names, tgt_names = pipeline.token_names(trained.vocabs)
      e = outputs[line]
      record["example"] = {"line": line, "src": src_names(e.src), "output": tgt_names(e.output),
                           "weights": np.asarray(e.weights, np.float64).round(4).tolist()}
  atomic_write.write_atomically(os.path.join(workdir, "scores.json"), json.dumps(record))
  return record


def beam_sweep(workdir: str, plan: Plan,
               progress: Callable[[], None] = held_out.no_progress) -> str:
  """Beam size x length penalty for seed 0 of the run in `workdir`, on the validation data
  (translation: pipeline.EVAL_SPLIT); a markdown table of the main metric."""
  trained = inference.load(workdir, "best", 0, translation_only=False)
  ev = eval_data(trained, pipeline.EVAL_SPLIT, plan.batch_size, workdir)
  metric = early_stopping.score_name(trained.config)
  lines = ["| beam | " + " | ".join(f"α = {a}" for a in plan.length_penalties) + " |",
           "|---|" + "---|" * len(plan.length_penalties)]
  for size in plan.beam_sizes:
    cells = []
    for alpha in plan.length_penalties:
      search = searches.make_search(trained.config.model, size, alpha, slots=ev.batch_size)
      cells.append(f"{score(trained, ev, search, None, progress)[0].scores[metric]:.4g}")
    lines.append(f"| {size} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _plots(records: dict[str, dict], config: Config, workdir: str) -> None:
  metric = early_stopping.score_name(config)
  series = {name: {bucket: float(np.mean([s["by_length"].get(bucket, np.nan)
                                          for s in r["seeds"]]))
                   for bucket in r["seeds"][0]["by_length"]}
            for name, r in records.items()}
  plots.score_by_length(series, os.path.join(workdir, "bleu_by_length.png"),
                        ylabel=metric.replace("_", " "))
  shown = {name: r["example"] for name, r in records.items()
           if attention.VARIANTS[name].has_weights}
  if shown:
    fig = plots.attention_grid(
        [(np.asarray(e["weights"]), e["src"], e["output"]) for e in shown.values()],
        titles=list(shown))
    plots.save(fig, os.path.join(workdir, "attention_grid.png"))


class _Stopped(Exception):
  """Training was stopped (the reason is the message); the run resumes next time."""


def _train_and_score(config: Config, workdir: str, plan: Plan,
                     stop_requested: Callable[[], str | None],
                     progress: Callable[[], None], memory: memory_lib.HostMemory) -> dict:
  """The run's scores (score_run), trained first unless scores of this config and plan are
  already in workdir/scores.json. Raises _Stopped if training was stopped."""
  settings = _settings(config, plan)
  cached = _cached(workdir, settings)
  if cached is not None:
    return cached
  print(f"== {os.path.basename(workdir)}: {config.train.num_seeds} seed(s)", flush=True)
  result = loop.train_and_evaluate(config, workdir, stop_requested=stop_requested,
                                   progress=progress, memory=memory)
  if "stopped" in result:
    raise _Stopped(result["stopped"])
  return score_run(workdir, settings, plan, progress)


def compare(base: Config, workdir: str, plan: Plan,
            stop_requested: Callable[[], str | None] = lambda: None,
            progress: Callable[[], None] = held_out.no_progress,
            memory: memory_lib.HostMemory = memory_lib.NONE) -> str | None:
  """Trains and scores every variant (and the ablation), then writes the reports (see the
  module docstring). Returns the reason if stopped early (rerun to continue), else None.
  stop_requested, progress and memory: as in loop.train_and_evaluate."""
  try:
    with writer_lock.WriterLock(workdir, "compare"):
      _compare(base, workdir, plan, stop_requested, progress, memory)
  except _Stopped as e:
    return str(e)
  return None


def _ablation(base: Config, workdir: str, plan: Plan, best: str, best_record: dict,
              stop_requested: Callable[[], str | None], progress: Callable[[], None],
              memory: memory_lib.HostMemory) -> dict[tuple[str, bool], dict]:
  """The best variant under both query placements, with and without input feeding:
  (query, input_feeding) -> its record (the base combination is the variant's own run)."""
  ablation: dict[tuple[str, bool], dict] = {}
  for query, feeding in itertools.product(("previous", "current"), (True, False)):
    if (query, feeding) == (base.model.query, base.model.input_feeding):
      ablation[(query, feeding)] = best_record
      continue
    name = f"{best}_{query}_{'feeding' if feeding else 'nofeeding'}"
    ablation[(query, feeding)] = _train_and_score(
        _run_config(base, attention=best, query=query, input_feeding=feeding),
        os.path.join(workdir, name), plan, stop_requested, progress, memory)
  return ablation


def _compare(base: Config, workdir: str, plan: Plan,
             stop_requested: Callable[[], str | None], progress: Callable[[], None],
             memory: memory_lib.HostMemory) -> None:
  configs = _variant_configs(base, plan.variants)
  os.makedirs(workdir, exist_ok=True)
  metric = early_stopping.score_name(base)
  records: dict[str, dict] = {}
  for variant, config in configs.items():
    records[variant] = _train_and_score(config, os.path.join(workdir, variant), plan,
                                        stop_requested, progress, memory)
  best = max(records, key=lambda name: report.summary(records[name], metric)[0])
  sections = ["# Attention variants compared\n",
              report.header(base, plan.split, plan.beam_size, plan.length_penalty),
              report.variants_table(records, base, plan.baseline, plan.split),
              report.caption(metric, plan.baseline)]
  if plan.ablation:
    ablation = _ablation(base, workdir, plan, best, records[best], stop_requested, progress,
                         memory)
    sections += [f"\n## Query placement and input feeding ({best})\n\n",
                 report.ablation_table(ablation, base)]
  _plots(records, base, workdir)
  sweep_path = os.path.join(workdir, "beam_sweep.md")
  sweep = (f"# Beam size × length penalty: {best}, seed {base.train.seed}, "
           f"{metric} on the validation data\n\n"
           + beam_sweep(os.path.join(workdir, best), plan, progress))
  with open(sweep_path, "w", encoding="utf-8") as f:
    f.write(sweep)
  sections.append("\nFigures: [score by source length](bleu_by_length.png), "
                  "[one sentence's attention](attention_grid.png); "
                  "[beam sweep](beam_sweep.md).\n")
  with open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write("".join(sections))
