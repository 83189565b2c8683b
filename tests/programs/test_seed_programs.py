"""End to end: `experiments.train` and `experiments.compare` with --num_seeds=2, as
subprocesses, with the default model's sizes (the GRU's 128-unit recurrent kernels,
whose orthogonal initialisation of several seeds once hung on a 2-thread CPU pool:
steps.init_state). Each fails, never hangs: a timeout here, and the program's own
--stall_timeout, which prints every thread's stack."""

from __future__ import annotations

import json
import os

import pytest

import conftest

pytestmark = pytest.mark.slow

SMALL = ["--num_seeds=2", "--num_steps=2", "--eval_every=2", "--checkpoint_every=2",
         "--train_size=256", "--eval_size=32", "--stall_timeout=60"]


def test_train_with_two_seeds_starts_and_finishes(tmp_path):
  workdir = str(tmp_path / "run")
  proc = conftest.run_program("train", f"--workdir={workdir}", *SMALL, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    splits = {json.loads(line)["split"] for line in f}
  assert {"train", "eval", "eval_seed0", "eval_seed1"} <= splits


def test_compare_with_two_seeds_writes_its_report(tmp_path):
  workdir = str(tmp_path / "compare")
  proc = conftest.run_program(
      "compare", f"--workdir={workdir}", "--variants=none,general", "--noablation",
      "--beam_sizes=1", "--length_penalties=0.6", "--beam_size=1", *SMALL, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert "2 seeds per variant" in report and "general" in report
