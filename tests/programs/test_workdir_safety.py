"""Nothing lost, nothing silent, through the real programs: one writer per workdir, the
vocabulary bound to its run, the command line's workdir, failed starts that leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import conftest
import helpers
from attn_jax.data import vocab
from attn_jax.train import writer_lock

pytestmark = pytest.mark.slow

TINY = ["--task=translation", "--vocab_size=300", "--max_len=15", "--embed_size=8",
        "--hidden_size=8", "--attention_size=8", "--batch_size=8", "--num_plots=0"]


def _train(workdir, data_dir: str, *extra: str, timeout: float = 240):
  return conftest.run_program("train", f"--workdir={workdir}", f"--data_dir={data_dir}",
                              *TINY, *extra, timeout=timeout)


def test_a_second_train_on_a_busy_workdir_is_one_line_and_touches_nothing(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  first = subprocess.Popen(
      [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
       f"--data_dir={data_dir}", *TINY, "--num_steps=100000", "--checkpoint_every=5",
       "--eval_every=1000"],
      cwd=conftest.ROOT, env=conftest.subprocess_env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 180
    while not (workdir / "checkpoints").is_dir() or not os.listdir(workdir / "checkpoints"):
      assert time.time() < deadline and first.poll() is None, first.stderr
      time.sleep(0.5)
    holder = (workdir / writer_lock.LOCK_NAME).read_text(encoding="utf-8")
    second = _train(workdir, data_dir, "--num_steps=10")
    assert conftest.error_line(second) == (
        f"error: {workdir} is in use by train (PID {first.pid} on {os.uname().nodename}, "
        f"since {_since(workdir)}); one writer per workdir "
        f"(lock {workdir / writer_lock.LOCK_NAME})")
    assert first.poll() is None  # the first run goes on
    assert (workdir / writer_lock.LOCK_NAME).read_text(encoding="utf-8") == holder
  finally:
    first.terminate()
    _, err = first.communicate(timeout=120)
  assert first.returncode == 0, err  # SIGTERM: checkpointed and stopped cleanly
  assert "Traceback" not in err


def _since(workdir) -> str:
  with open(os.path.join(workdir, writer_lock.LOCK_NAME), encoding="utf-8") as f:
    return f.read().split("since ")[1].rstrip(")\n")


def test_a_failed_start_leaves_nothing_a_later_start_would_adopt(tmp_path):
  data_dir = helpers.write_corpus(tmp_path, splits=("train",))  # no val: the start fails
  workdir = tmp_path / "run"
  proc = _train(workdir, data_dir, "--num_steps=2", "--vocab_size=320")
  assert conftest.error_line(proc).endswith("no such file")
  assert not workdir.exists()  # not even an empty workdir
  helpers.write_corpus(tmp_path, splits=("val",))
  proc = _train(workdir, data_dir, "--num_steps=2")
  assert proc.returncode == 0, proc.stderr
  with open(vocab.record_path(str(workdir / "spm.ende.model")), encoding="utf-8") as f:
    assert json.load(f)["vocab_size"] == 300


def test_a_leftover_vocabulary_of_another_size_is_an_error_naming_both(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, data_dir, "--num_steps=2").returncode == 0
  os.rename(workdir / "checkpoints", tmp_path / "old_checkpoints")  # to start over
  model = workdir / "spm.ende.model"
  proc = _train(workdir, data_dir, "--num_steps=2", "--vocab_size=320")
  assert conftest.error_line(proc) == (
      f"error: {model} was trained for vocab_size=300, languages en+de, options "
      f"{json.dumps(vocab.OPTIONS, sort_keys=True)}, but this run asks for vocab_size=320, "
      f"languages en+de, options {json.dumps(vocab.OPTIONS, sort_keys=True)}: remove it and "
      f"{model}.json to train a new one, or run with the options it was trained for")
  assert not (workdir / "checkpoints").exists()


def test_a_vocabulary_of_random_bytes_is_one_line_in_train_and_translate(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, data_dir, "--num_steps=2", "--eval_every=2").returncode == 0
  model = workdir / "spm.ende.model"
  model.write_bytes(os.urandom(500))
  expected = f"error: {model}: not a SentencePiece model (500 bytes that do not parse as one)"
  assert conftest.error_line(_train(workdir, data_dir, "--num_steps=4")) == expected
  source = tmp_path / "in.en"
  source.write_text("the cat\n", encoding="utf-8")
  proc = conftest.run_program("translate", f"--workdir={workdir}", f"--input={source}",
                              "--checkpoint=latest")
  assert conftest.error_line(proc) == expected


def test_the_workdir_on_the_command_line_wins_over_the_flagfile(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  old = tmp_path / "old"
  assert _train(old, data_dir, "--num_steps=2").returncode == 0
  before = conftest.snapshot(old)
  new = tmp_path / "new"
  proc = conftest.run_program("train", f"--workdir={new}", f"--flagfile={old / 'flags.txt'}")
  assert proc.returncode == 0, proc.stderr
  assert f"note: --workdir={new} from the command line, not {old} from a flagfile" in proc.stderr
  assert os.listdir(new / "checkpoints") and conftest.snapshot(old) == before


def test_small_bad_inputs_each_one_line(tmp_path):
  missing = conftest.run_program("train", f"--flagfile={tmp_path / 'nope.flags'}",
                                 f"--workdir={tmp_path / 'w'}")
  assert conftest.error_line(missing) == (
      f"error: Unable to open flagfile: [Errno 2] No such file or directory: "
      f"'{tmp_path / 'nope.flags'}'")
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  proc = conftest.run_program("train", f"--workdir={a_file}", "--num_steps=1")
  assert conftest.error_line(proc) == f"error: {a_file}: not a directory (--workdir names a file)"
  data_dir = helpers.write_corpus(tmp_path)
  proc = _train(tmp_path / "small", data_dir, "--vocab_size=10")
  assert conftest.error_line(proc).startswith(
      "error: flag --vocab_size: 10 does not work for this corpus: it must be at least ")
  assert "character_coverage" not in proc.stderr and not (tmp_path / "small").exists()


def test_a_resume_past_a_damaged_checkpoint_prints_no_tracebacks(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  flags = ["--checkpoint_every=2", "--eval_every=100", "--keep_checkpoints=5"]
  assert _train(workdir, data_dir, "--num_steps=4", *flags).returncode == 0
  (workdir / "checkpoints" / "4" / "state" / "manifest.ocdbt").write_bytes(b"")
  proc = _train(workdir, data_dir, "--num_steps=6", *flags)
  assert proc.returncode == 0, proc.stderr
  assert "checkpoint at step 4 is unreadable" in proc.stdout
  assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr
  assert "start step 2 of 6" in proc.stdout
