"""End to end: `python -m experiments.train` as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import conftest

pytestmark = pytest.mark.slow

TINY_FLAGS = [
    "--task=reverse", "--vocab_size=8", "--min_len=1", "--max_len=5", "--train_size=64",
    "--eval_size=16", "--batch_size=8", "--embed_size=8", "--hidden_size=8",
    "--attention_size=8", "--warmup_steps=2", "--log_every=2", "--eval_every=2",
    "--checkpoint_every=2", "--num_plots=1",
]
PROGRESS = re.compile(r"^step (\d+)/(\d+) \| loss \d+\.\d{4} \| tok/s [\d,]+ \| "
                      r"elapsed \d+m\d\ds \| eta \d+m\d\ds$", re.MULTILINE)


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=conftest.ROOT,
                        env=conftest.subprocess_env(), capture_output=True, text=True,
                        timeout=timeout, check=False)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A 4-step run, then the same flagfile resumed to 6 steps."""
  workdir = str(tmp_path_factory.mktemp("e2e") / "run")
  first = _run(f"--workdir={workdir}", "--num_steps=4", *TINY_FLAGS)
  assert first.returncode == 0, first.stderr
  with open(os.path.join(workdir, "flags.txt"), encoding="utf-8") as f:
    flags_after_first = f.read()
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records_after_first = [json.loads(line) for line in f]
  resumed = _run(f"--flagfile={os.path.join(workdir, 'flags.txt')}", "--num_steps=6")
  assert resumed.returncode == 0, resumed.stderr
  return {"workdir": workdir, "first": first, "resumed": resumed,
          "flags_after_first": flags_after_first, "records_after_first": records_after_first}


def test_outputs_of_a_run(run):
  workdir = run["workdir"]
  for name in ("flags.txt", "config.json", "metrics.jsonl", "plots/curves.png",
               "plots/attention_2.png", "plots/attention_4.png"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(os.path.join(workdir, "tensorboard")))
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  assert config["model"]["hidden_size"] == 8 and config["data"]["task"] == "reverse"

  records = run["records_after_first"]
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in train] == [2, 4] and [r["step"] for r in evals] == [2, 4]
  for r in train:
    assert {"step", "split", "loss", "token_accuracy", "tokens_per_sec", "wall_time"} <= set(r)
  for r in evals:
    assert {"step", "split", "loss", "token_accuracy", "sequence_accuracy",
            "alignment_accuracy", "attention_entropy", "wall_time"} <= set(r)
    assert 0.0 <= r["sequence_accuracy"] <= 1.0 and r["attention_entropy"] >= 0.0


def test_console_output(run):
  out = run["first"].stdout
  assert "start step 0 of 4" in out
  assert [m.groups() for m in PROGRESS.finditer(out)] == [("2", "4"), ("4", "4")]
  assert re.search(r"^eval at step 4: loss \d", out, re.MULTILINE)
  assert "Traceback" not in run["first"].stderr


def test_flagfile_reruns_and_resumes(run):
  flags = run["flags_after_first"].splitlines()
  assert f"--workdir={run['workdir']}" in flags
  assert "--num_steps=4" in flags and "--hidden_size=8" in flags and "--task=reverse" in flags
  out = run["resumed"].stdout
  start = int(re.search(r"start step (\d+) of 6", out).group(1))
  assert start == 4
  assert [m.groups() for m in PROGRESS.finditer(out)] == [("6", "6")]
  records = _records(run["workdir"])
  assert [(r["step"], r["split"]) for r in records] == [
      (2, "train"), (2, "eval"), (4, "train"), (4, "eval"), (6, "train"), (6, "eval")]
  assert records[:4] == run["records_after_first"]
  with open(os.path.join(run["workdir"], "flags.txt"), encoding="utf-8") as f:
    assert "--num_steps=6" in f.read().splitlines()


def test_incompatible_config_fails_with_one_line(run):
  workdir = run["workdir"]
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config_before = f.read()
  ckpts_before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  proc = _run(f"--flagfile={os.path.join(workdir, 'flags.txt')}", "--hidden_size=16")
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "hidden_size" in errors[0]
  assert proc.stderr.strip().splitlines()[-1] == errors[0]
  assert "model.hidden_size (saved 8, now 16)" in errors[0]
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert f.read() == config_before
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ckpts_before


@pytest.mark.parametrize("bad", [["--hidden_size=0"], ["--cell=foo"], ["--attention=bogus"]])
def test_bad_flags_fail_without_traceback(tmp_path, bad):
  proc = _run(f"--workdir={tmp_path / 'w'}", *bad, timeout=120)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  assert bad[0].split("=")[0].lstrip("-") in proc.stderr
  assert not os.path.exists(tmp_path / "w")


def test_config_error_names_the_flag(tmp_path):
  proc = _run(f"--workdir={tmp_path / 'w'}", "--min_len=5", "--max_len=3", timeout=120)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("error: flag --min_len:")
  assert not os.path.exists(tmp_path / "w")


def test_missing_workdir_fails_without_traceback():
  proc = _run("--num_steps=1", timeout=120)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr and "workdir" in proc.stderr


def test_unusable_workdir_fails_with_one_line(tmp_path):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("")
  proc = _run(f"--workdir={not_a_dir}", "--num_steps=1", *TINY_FLAGS, timeout=120)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
