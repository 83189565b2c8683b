"""The comparison's report.md: the variants table, the ablation table, their captions.

A record is what comparison.score_run writes for one run: its parameter count,
training tokens/s and, per seed, the scores and per-sentence outputs.
"""

from __future__ import annotations

import math

from attn_jax.config import Config
from attn_jax.data import corpus
from attn_jax.study import significance
from attn_jax.train import early_stopping


def summary(record: dict, metric: str) -> tuple[float, float]:
  """(mean, half-width of the 95 % Student-t interval) of a metric over the record's seeds."""
  return significance.mean_ci([s["scores"][metric] for s in record["seeds"]])


def _fmt(mean: float, half: float, scale: float = 1.0) -> str:
  if math.isnan(half):
    return f"{scale * mean:.2f}"
  return f"{scale * mean:.2f} ± {scale * half:.2f}"


ADEQUACY_COLUMNS = [("zero_weight_share", "zero weights (%)", 100.0),
                    ("repeated_ngrams", "repeated bigrams (%)", 100.0),
                    ("unattended_sources", "never-attended source tokens (%)", 100.0)]


def _metric_columns(config: Config) -> list[tuple[str, str, float]]:
  """(score key, column title, display scale) of the report's metric columns."""
  if config.data.task == "translation":
    return [("bleu_tok_lc", "BLEU tok-lc", 1.0), ("bleu", "sacreBLEU", 1.0),
            ("attention_entropy", "attention entropy (nats)", 1.0)] + ADEQUACY_COLUMNS
  return [("sequence_accuracy", "exact-sequence accuracy (%)", 100.0),
          ("alignment_accuracy", "alignment accuracy (%)", 100.0), ("aer", "AER (%)", 100.0),
          ("best_head_alignment_accuracy", "best head's alignment (%)", 100.0),
          ("attention_entropy", "attention entropy (nats)", 1.0)] + ADEQUACY_COLUMNS


def _references(config: Config, split: str) -> list[str]:
  d = config.data
  if d.task != "translation":
    return []
  return corpus.read_lines(corpus.split_path(d.data_dir, split, d.tgt_lang))


def _p_value(base: dict, record: dict, config: Config, refs: list[str]) -> float:
  """The largest (most conservative) paired-bootstrap p over the seed pairs (k against k)."""
  return max(significance.paired_bootstrap(config.data.task, b["per_sentence"],
                                           s["per_sentence"], refs)
             for b, s in zip(base["seeds"], record["seeds"]))


def variants_table(records: dict[str, dict], config: Config, baseline: str, split: str) -> str:
  """The markdown table of report.md: one row per run in `records` (name -> record)."""
  columns = _metric_columns(config)
  refs = _references(config, split)
  base = records.get(baseline)
  head = (["variant", "parameters"] + [title for _, title, _ in columns]
          + ["train tokens/s", f"p vs {baseline}"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, record in records.items():
    cells = [name, f"{record['params']:,}"]
    cells += [_fmt(*summary(record, key), scale)
              if all(key in s["scores"] for s in record["seeds"]) else "–"
              for key, _, scale in columns]
    cells.append(f"{record['tokens_per_sec']:,.0f}")
    cells.append("–" if base is None or name == baseline
                 else f"{_p_value(base, record, config, refs):.3f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def ablation_table(records: dict[tuple[str, bool], dict], config: Config) -> str:
  """query x input_feeding: mean ± 95 % CI of the main metric (records keyed by both)."""
  metric = early_stopping.score_name(config)
  scale = 100.0 if metric == "sequence_accuracy" else 1.0
  lines = ["| query | input feeding | no input feeding |", "|---|---|---|"]
  for query in ("previous", "current"):
    cells = [_fmt(*summary(records[(query, feeding)], metric), scale)
             for feeding in (True, False)]
    lines.append(f"| {query} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def header(base: Config, split: str, beam_size: int, length_penalty: float) -> str:
  """The paragraph above the table: task, seeds, steps, how each seed was scored."""
  d, t = base.data, base.train
  task = f"{d.src_lang}→{d.tgt_lang} ({d.data_dir})" if d.task == "translation" else (
      f"synthetic {d.task}, lengths {d.min_len}–{d.max_len}")
  last = t.seed + t.num_seeds - 1
  return (f"Task: {task}. {t.num_seeds} seeds per variant (seeds {t.seed}…{last}, trained "
          f"together as one program), {t.num_steps} steps each; every seed scored at "
          f"its best checkpoint by validation {early_stopping.score_name(base)} on "
          f"{split if d.task == 'translation' else 'the held-out set'}, "
          f"beam {beam_size}, length penalty {length_penalty}.\n")


def caption(metric: str, baseline: str) -> str:
  """The note under the variants table: what the intervals and p-values are."""
  return (f"\nMean ± half-width of the 95 % Student-t confidence interval over seeds. "
          f"p: sacreBLEU-style paired bootstrap ({significance.BOOTSTRAP_SAMPLES} "
          f"resamples) of {metric} against {baseline}, seed k against seed k, the largest p "
          f"over the seeds. Train tokens/s: all seeds together. Multi-head variants: "
          f"alignment and entropy of the heads' mean weights; best head: the head with the "
          f"highest alignment accuracy. Repeated bigrams: output bigrams beyond the "
          f"reference's count, per output bigram (over-translation); never-attended: source "
          f"tokens (EOS excluded) that no output step attends to most (under-translation).\n")
