"""The comparison: statistics against references, and a tiny comparison end to end."""

from __future__ import annotations

import os

import numpy as np
import pytest

import conftest
import helpers
from attn_jax.study import comparison, significance


def test_mean_ci_is_the_student_t_interval():
  mean, half = significance.mean_ci([1.0, 2.0, 4.0])
  sd = np.std([1.0, 2.0, 4.0], ddof=1)
  assert mean == pytest.approx(7 / 3)
  assert half == pytest.approx(4.302653 * sd / np.sqrt(3), rel=1e-6)  # t(0.975, df=2)
  assert np.isnan(significance.mean_ci([5.0])[1])


def test_paired_bootstrap_separates_a_clear_difference_from_none():
  config = helpers.tiny_config()
  rng = np.random.default_rng(0)
  base = (rng.random(200) < 0.5).astype(int)
  better = np.maximum(base, (rng.random(200) < 0.5).astype(int))
  assert significance.paired_bootstrap(config.data.task, base, better, []) < 0.01
  assert significance.paired_bootstrap(config.data.task, base, base, []) == 1.0


def test_paired_bootstrap_of_bleu_uses_sacrebleu():
  config = helpers.tiny_config(data_overrides=dict(task="translation", data_dir="d",
                                                   vocab_size=300))
  refs = [f"the {w} sat on the mat near a {w}" for w in helpers.CORPUS_WORDS] * 5
  good = list(refs)
  bad = [r.replace("the", "a").replace("mat", "rug") for r in refs]
  assert significance.paired_bootstrap(config.data.task, bad, good, refs, samples=200) < 0.01


@pytest.mark.long
@pytest.mark.slow
def test_compare_writes_the_reports_and_continues_where_it_stopped(tmp_path):
  config = helpers.tiny_config(model_overrides=dict(encoder_size=4),  # dot: 2 x 4 == hidden 8
                               train_overrides=dict(num_steps=4, eval_every=2,
                                                    checkpoint_every=2, num_seeds=2, num_plots=0))
  plan = comparison.Plan(variants=("none", "dot"), baseline="none", split="eval", beam_size=2,
                         beam_sizes=(1, 2), length_penalties=(0.0,), batch_size=8,
                         ablation=False)  # trained and checked without training below
  workdir = str(tmp_path / "cmp")
  calls = iter(range(1000))
  stopped = comparison.compare(config, workdir, plan,
                               stop_requested=lambda: "SIGTERM" if next(calls) == 6 else None)
  assert stopped == "SIGTERM"  # in the second run ("dot"), after its step 2
  assert os.path.exists(os.path.join(workdir, "none", "scores.json"))
  assert not os.path.exists(os.path.join(workdir, "report.md"))
  before = conftest.snapshot(os.path.join(workdir, "none"))
  assert comparison.compare(config, workdir, plan) is None
  assert conftest.snapshot(os.path.join(workdir, "none")) == before  # not trained again
  with open(os.path.join(workdir, "report.md"), encoding="utf-8") as f:
    report = f.read()
  rows = [line for line in report.splitlines() if line.startswith("| none") or
          line.startswith("| dot")]
  assert len(rows) == 2 and "| –" in rows[0]  # the baseline has no p-value
  for name in ("bleu_by_length.png", "attention_grid.png", "beam_sweep.md"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "beam_sweep.md"), encoding="utf-8") as f:
    assert [line.split("|")[1].strip() for line in f if line.startswith("| ")][1:] == ["1", "2"]


def test_ablation_trains_the_other_three_combinations_of_the_best_variant(tmp_path, monkeypatch):
  config = helpers.tiny_config(model_overrides=dict(query="current", input_feeding=True,
                                                    encoder_size=4),
                               train_overrides=dict(num_seeds=2))
  plan = comparison.Plan(variants=("none", "dot"), baseline="none", split="eval")
  trained = []

  def fake_run(run_config, workdir, plan, stop_requested, progress, memory):
    del plan, stop_requested, progress, memory
    m = run_config.model
    trained.append((os.path.basename(workdir), m.attention, m.query, m.input_feeding))
    accuracy = {"none": 0.2, "dot": 0.9}[m.attention] - 0.1 * (m.query == "previous")
    return {"params": 10, "tokens_per_sec": 1.0, "example": {},
            "seeds": [{"scores": {"sequence_accuracy": accuracy + d}, "per_sentence": [1, 0],
                       "by_length": {"1-10": accuracy}} for d in (0.0, 0.02)]}

  monkeypatch.setattr(comparison, "_train_and_score", fake_run)
  monkeypatch.setattr(comparison, "_plots", lambda *args: None)
  monkeypatch.setattr(comparison, "beam_sweep", lambda *args: "")
  assert comparison.compare(config, str(tmp_path), plan) is None
  assert trained == [("none", "none", "current", True), ("dot", "dot", "current", True),
                     ("dot_previous_feeding", "dot", "previous", True),
                     ("dot_previous_nofeeding", "dot", "previous", False),
                     ("dot_current_nofeeding", "dot", "current", False)]
  with open(os.path.join(tmp_path, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert "## Query placement and input feeding (dot)" in report
  assert "| previous | 81.00 ± 12.71 | 81.00 ± 12.71 |" in report  # t(0.975, 1) = 12.706
  assert "| current | 91.00 ± 12.71 | 91.00 ± 12.71 |" in report


@pytest.mark.parametrize("flag, message", [
    ("--variants=dot,bogus", "error: flag --variants: unknown variant(s) bogus; known: none, dot"),
    ("--baseline=general", "error: flag --baseline: 'general' is not one of --variants"),
    ("--beam_sizes=1,x", "error: flag --beam_sizes: expected ints, got 1,x"),
    ("--hidden_size=128", "error: flag --variants: dot: dot scores q . k without parameters, so "
     "an encoder state (256 = 2 x 128 per direction) must have the decoder's hidden_size (128): "
     "set encoder_size to 64, or use general attention"),
])
def test_bad_flags_are_one_line(tmp_path, flag, message):
  proc = conftest.run_program("compare", f"--workdir={tmp_path / 'w'}", "--variants=none,dot",
                              flag)
  assert proc.returncode == 1
  assert conftest.error_line(proc).startswith(message)
  assert not (tmp_path / "w").exists()
