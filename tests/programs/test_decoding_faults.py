"""translate and evaluate under faults, as subprocesses: damaged checkpoints, stop signals,
overlong lines, outputs that would overwrite the input or have nowhere to go."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import conftest
import helpers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A translation workdir with checkpoints at steps 2 and 4, both scored."""
  return helpers.trained_translation(tmp_path_factory.mktemp("faults"))


def _damaged_copy(trained, tmp_path, step: int) -> str:
  """A copy of the trained workdir whose checkpoint at `step` has damaged arrays."""
  workdir = str(tmp_path / "damaged")
  shutil.copytree(trained["workdir"], workdir)
  for path in glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                        recursive=True):
    with open(path, "wb") as f:
      f.write(b"\0" * 64)
  return workdir


def _translate(workdir, *args, **kwargs):
  return conftest.run_program("translate", f"--workdir={workdir}", *args, **kwargs)


def test_a_damaged_latest_checkpoint_falls_back_with_a_warning(trained, tmp_path):
  workdir = _damaged_copy(trained, tmp_path, 4)
  before = conftest.snapshot(workdir)
  proc = _translate(workdir, "--checkpoint=latest", stdin=b"the red cat\n")
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr and len(proc.stdout.splitlines()) == 1
  warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
  assert len(warnings) == 1 and warnings[0].startswith(
      f"warning: {workdir}/checkpoints/4: checkpoint at step 4 is unreadable (")
  assert warnings[0].endswith("; using the checkpoint at step 2 instead")
  # A reader changes nothing; it only adds the searches it compiled (W/compiled/).
  compiled = os.path.join(str(workdir), "compiled") + os.sep
  assert {p: t for p, t in conftest.snapshot(workdir).items()
          if not p.startswith(compiled)} == before


@pytest.mark.parametrize("program", ["translate", "evaluate"])
def test_a_damaged_named_checkpoint_is_one_error_line(trained, tmp_path, program):
  workdir = _damaged_copy(trained, tmp_path, 4)
  args = ["--input=-"] if program == "translate" else ["--split=test"]
  proc = conftest.run_program(program, f"--workdir={workdir}", "--checkpoint=4", *args,
                              stdin=b"the red cat\n")
  line = conftest.error_line(proc)
  assert line.startswith(f"error: {workdir}/checkpoints/4: checkpoint at step 4 is unreadable (")


def test_evaluate_falls_back_too_and_scores(trained, tmp_path):
  workdir = _damaged_copy(trained, tmp_path, 4)
  proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--checkpoint=latest",
                              "--split=test", "--beam_size=1")
  assert proc.returncode == 0, proc.stderr
  assert "using the checkpoint at step 2 instead" in proc.stderr
  assert "checkpoint step 2" in proc.stdout


def test_evaluate_with_nowhere_to_write_fails_before_decoding(trained, tmp_path):
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained["workdir"], workdir)
  shutil.rmtree(os.path.join(workdir, "eval"), ignore_errors=True)
  with open(os.path.join(workdir, "eval"), "w", encoding="utf-8") as f:
    f.write("a file where the eval directory goes")
  proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--split=test")
  assert conftest.error_line(proc) == f"error: {workdir}/eval: File exists"
  assert "BLEU" not in proc.stdout


def test_sigint_during_translate_keeps_the_lines_done_in_a_partial_file(trained, tmp_path):
  source = tmp_path / "in.en"
  source.write_text("".join(f"the red cat {i % 7}\n" for i in range(3000)), encoding="utf-8")
  output = tmp_path / "out.de"
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.translate", f"--workdir={trained['workdir']}",
       f"--input={source}", f"--output={output}", "--beam_size=2", "--batch_size=4"],
      cwd=conftest.ROOT, env=conftest.subprocess_env(), stderr=subprocess.PIPE, text=True)
  partial = tmp_path / "out.de.partial"
  deadline = time.time() + 180
  while not (partial.exists() and partial.stat().st_size):
    assert time.time() < deadline and proc.poll() is None, proc.stderr.read()
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  done = partial.read_text(encoding="utf-8").splitlines()
  assert 1024 <= len(done) < 3000 and len(done) % 1024 == 0  # whole chunks, input order
  assert not output.exists()
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1] == (
      f"error: stopped by SIGINT; the {len(done):,} lines translated so far are in {partial}")
  assert "translated 1,024 of 3,000 lines (" in err  # the progress line of a long input


def test_an_overlong_line_is_cut_into_pieces_with_a_warning(trained, tmp_path):
  source = tmp_path / "in.en"
  source.write_text("the red cat\n" + "the big dog sits on the red cat " * 40 + "\n",
                    encoding="utf-8")
  proc = _translate(trained["workdir"], f"--input={source}", "--max_source_len=20",
                    "--beam_size=2")
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.split("\n")
  assert len(lines) == 3 and lines[2] == ""
  warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
  assert len(warnings) == 1 and warnings[0].startswith("warning: line 2: ")
  assert "more than max_source_len 20: translated in" in warnings[0]


def test_output_that_would_overwrite_the_input_or_has_no_directory(trained, tmp_path):
  source = tmp_path / "in.en"
  source.write_text("the red cat\n", encoding="utf-8")
  proc = _translate(trained["workdir"], f"--input={source}", f"--output={source}")
  assert conftest.error_line(proc) == (
      f"error: flag --output: {source} is the --input file; name another")
  assert source.read_text(encoding="utf-8") == "the red cat\n"
  nowhere = tmp_path / "missing" / "out.de"
  proc = _translate(trained["workdir"], f"--input={source}", f"--output={nowhere}")
  assert conftest.error_line(proc) == (
      f"error: flag --output: directory {tmp_path / 'missing'} does not exist")
