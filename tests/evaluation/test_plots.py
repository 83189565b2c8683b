"""Figures: attention heatmaps and curves are written as PNG files."""

from __future__ import annotations

import numpy as np

from attn_jax.evaluation import plots


def test_plots(tmp_path):
  items = [(np.eye(3), ["a", "b", "</s>"], ["a", "b", "</s>"]),
           (np.full((2, 4), 0.25), list("abcd"), ["x", "</s>"])]
  fig = plots.attention_grid(items, title="t")
  assert len(fig.axes) == 2
  plots.save(fig, str(tmp_path / "grid.png"))
  records = [{"step": 1, "split": "train", "loss": 2.0, "token_accuracy": 0.1},
             {"step": 2, "split": "eval", "loss": 1.5, "sequence_accuracy": 0.0}]
  plots.curves(records, str(tmp_path / "curves.png"))
  for name in ("grid.png", "curves.png"):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
