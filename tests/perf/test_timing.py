"""experiments.benchmark --quick: the figures it reports (not their values)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import conftest
from attn_jax.perf import timing

TINY = ["--embed_size=8", "--hidden_size=8", "--attention_size=8", "--vocab_size=40",
        "--max_len=20", "--batch_size=8"]


def test_synthetic_pairs_stay_within_max_len():
  src, tgt = timing.synthetic_pairs(500, 14.0, 40, 20, seed=0)
  lengths = np.array([len(s) for s in src])
  assert lengths.min() >= 1 and lengths.max() <= 20 and 10 < lengths.mean() < 16
  assert all(1 <= len(t) <= 20 for t in tgt)
  assert all(((s >= 3) & (s < 40)).all() for s in src)  # no PAD, BOS or EOS inside


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path):
  out = tmp_path / "bench.json"
  proc = conftest.run_program("benchmark", "--quick", "--profile", f"--json={out}", *TINY)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r["backend"] == "cpu" and r["matmul_peak_flops_per_sec"] > 0
  t = r["training"]
  assert len(t["windows"]) == 5
  for name in ("target_tokens_per_sec", "tokens_per_sec", "sentences_per_sec",
               "flops_per_sec"):
    assert 0 < t[name]["min"] <= t[name]["median"] <= t[name]["max"]
  assert t["tokens_per_sec"]["median"] > t["target_tokens_per_sec"]["median"]
  assert t["compile"]["count"] == 1 and 0 < t["matmul_utilisation"] < 1
  assert all(mib > 0 for mib in t["compile"]["temp_mib_per_shape"].values())  # CPU reports them
  assert t["peak_rss_gib"] > 0 and t["device_peak_gib"] is None
  stages = t["resident_gib_by_stage"]
  assert list(stages) == ["imports and matmul peak", "data loaded",
                          "parameters and optimizer state", "train step compiled",
                          "warm-up steps", "timed steps"]
  assert all(0 < gib <= t["peak_rss_gib"] + 0.01 for gib in stages.values())
  assert r["eval_step_compile"]["count"] == 1
  assert set(r["decoding"]) == {"synthetic/greedy", "synthetic/beam5"}
  for row in r["decoding"].values():
    assert row["sentences"] == 200 and row["sentences_per_sec"] > 0
    assert row["mean_output_len"] >= 1
    assert row["compile"]["count"] == 1  # one width: its calls share one shape
  p = r["profile"]
  assert p["steps"] == 3 and set(p["ms_per_step"]) == {"encoder", "decoder", "output", "update",
                                                       "sum of parts", "step"}
  assert all(ms > 0 for ms in p["ms_per_step"].values())
  for line in ("target_tokens_per_sec", "% of the float32 matmul peak",
               "compilation: train step 1 x", "XLA temporaries per step, MiB",
               "synthetic/beam5", "the train step in parts"):
    assert line in proc.stdout


@pytest.mark.long
@pytest.mark.slow
def test_bfloat16_matmuls_report_their_peak_too(tmp_path):
  out = tmp_path / "bench.json"
  proc = conftest.run_program("benchmark", "--quick", "--nodecode", "--profile",
                              "--matmul_dtype=bfloat16", f"--json={out}", *TINY)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r["config"]["model"]["matmul_dtype"] == "bfloat16"
  assert r["matmul_peak_low_flops_per_sec"] > 0
  assert 0 < r["training"]["matmul_utilisation_low"] < 1
  assert "bfloat16 operands" in proc.stdout and "% of the bfloat16 one" in proc.stdout


@pytest.mark.long
@pytest.mark.slow
def test_seeds_trained_together_are_counted_together(tmp_path):
  out = tmp_path / "bench.json"
  proc = conftest.run_program("benchmark", "--quick", "--num_seeds=2", "--nodecode",
                              f"--json={out}", *TINY)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r["config"]["train"]["num_seeds"] == 2 and "decoding" not in r
  assert r["training"]["compile"]["count"] == 1
  assert "2 seeds as one program" in proc.stdout


def test_profile_needs_one_seed():
  proc = conftest.run_program("benchmark", "--quick", "--num_seeds=2", "--profile", *TINY)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "profile" in proc.stderr.strip().splitlines()[-1]
