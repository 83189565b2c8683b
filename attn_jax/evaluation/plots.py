"""Figures: attention heatmaps and training curves (matplotlib, Agg backend).

matplotlib is imported at the first figure, not with this module: resident memory and
start-up time that a program drawing nothing (a benchmark, a training run before its first
evaluation) does not pay (figures in experiments/results/speed.md).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from matplotlib.figure import Figure


@functools.cache
def _pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def attention_grid(items: list[tuple[np.ndarray, list[str], list[str]]],
                   title: str = "", titles: list[str] | None = None) -> Figure:
  """Heatmaps side by side; each item is (weights [out_len, src_len], source tokens, output
  tokens); `titles` name the panels."""
  width = sum(1.5 + 0.28 * w.shape[1] for w, _, _ in items)
  height = max(1.5 + 0.28 * w.shape[0] for w, _, _ in items)
  fig, axes = _pyplot().subplots(1, len(items), figsize=(width, height), squeeze=False)
  for ax, (weights, src, tgt) in zip(axes[0], items):
    ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tgt)), tgt, fontsize=7)
    ax.set_xlabel("source")
  for ax, name in zip(axes[0], titles or []):
    ax.set_title(name, fontsize=8)
  axes[0][0].set_ylabel("output")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def save(fig: Figure, path: str) -> None:
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)


def curves(records: list[dict], path: str) -> None:
  """Loss and accuracies against step, train and eval, from metrics.jsonl records."""
  fig, (ax_loss, ax_acc) = _pyplot().subplots(1, 2, figsize=(10, 3.8))
  for split, style in (("train", "-"), ("eval", "o-")):
    rows = [r for r in records if r.get("split") == split]
    if not rows:
      continue
    steps = [r["step"] for r in rows]
    ax_loss.plot(steps, [r.get("loss", np.nan) for r in rows], style, label=f"{split} loss")
    for key in ("token_accuracy", "sequence_accuracy", "alignment_accuracy"):
      if any(key in r for r in rows):
        ax_acc.plot(steps, [r.get(key, np.nan) for r in rows], style, label=f"{split} {key}")
  ax_loss.set_yscale("log")
  for ax, label in ((ax_loss, "loss (nats/token)"), (ax_acc, "accuracy")):
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  save(fig, path)


def bleu_by_length(rows: list[dict], path: str, title: str = "") -> None:
  """Bar chart of bleu.bleu_by_length rows: score per source-length bucket, sentence counts on top."""
  fig, ax = _pyplot().subplots(figsize=(6, 3.5))
  labels = [r["bucket"] for r in rows]
  bars = ax.bar(labels, [r["bleu_tok_lc"] for r in rows], color="0.45")
  for bar, r in zip(bars, rows):
    ax.annotate(f"n={r['sentences']}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center", va="bottom", fontsize=7)
  ax.set_xlabel("source length (words)")
  ax.set_ylabel("BLEU (tokenised, lowercased)")
  if title:
    ax.set_title(title, fontsize=9)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  save(fig, path)


def score_by_length(series: dict[str, dict[str, float]], path: str, ylabel: str) -> None:
  """One line per name: score against source-length bucket ({"1-10": score, ...}, ascending)."""
  fig, ax = _pyplot().subplots(figsize=(6.5, 3.8))
  buckets = max(series.values(), key=len)
  order = {label: i for i, label in enumerate(buckets)}
  for name, scores in series.items():
    labels = [b for b in buckets if b in scores]
    ax.plot([order[b] for b in labels], [scores[b] for b in labels], "o-", label=name)
  ax.set_xticks(range(len(buckets)), list(buckets))
  ax.set_xlabel("source length")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  save(fig, path)
