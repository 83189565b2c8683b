"""The run record: metrics.jsonl, TensorBoard events, the progress line."""

from __future__ import annotations

import os

from attn_jax.train import runlog


def test_runlog_records_and_resume_truncation(tmp_path, capsys):
  workdir = str(tmp_path)
  log = runlog.RunLog(workdir, 0, 10)
  for step in (2, 4, 6):
    rec = log.write(step, "train", {"loss": 1.0 / step, "tokens_per_sec": 100.0})
    assert rec["step"] == step and rec["split"] == "train" and "wall_time" in rec
  log.write(4, "eval", {"loss": 0.3})
  log.progress(4, {"loss": 0.25, "tokens_per_sec": 12345.6})
  log.close()
  line = capsys.readouterr().out.strip()
  assert line.startswith("step 4/10 | loss 0.2500 | tok/s 12,346 | elapsed ")
  records = runlog.read_records(os.path.join(workdir, "metrics.jsonl"))
  assert [(r["step"], r["split"]) for r in records] == [(2, "train"), (4, "train"), (6, "train"),
                                                        (4, "eval")]
  # Resuming at step 4 drops what the interrupted run logged after step 4.
  runlog.RunLog(workdir, 4, 10).close()
  records = runlog.read_records(os.path.join(workdir, "metrics.jsonl"))
  assert [(r["step"], r["split"]) for r in records] == [(2, "train"), (4, "train"), (4, "eval")]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
  assert runlog.read_records(str(tmp_path / "missing.jsonl")) == []


def test_format_seconds():
  f = runlog._format_seconds  # pylint: disable=protected-access
  assert f(0) == "0m00s" and f(65) == "1m05s" and f(3725) == "1h02m05s" and f(-3) == "0m00s"
