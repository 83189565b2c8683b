"""Bad input through the real programs: one line naming the file or flag, exit 1, no
traceback, and nothing already in the workdir changed."""

from __future__ import annotations

import pytest

import conftest
import helpers

pytestmark = pytest.mark.slow

TINY = ["--task=translation", "--vocab_size=300", "--max_len=15", "--embed_size=8",
        "--hidden_size=8", "--attention_size=8", "--num_steps=2", "--batch_size=8"]


def _train(workdir, data_dir: str | None, *extra: str):
  data = [f"--data_dir={data_dir}"] if data_dir is not None else []
  return conftest.run_program("train", f"--workdir={workdir}", *data, *TINY, *extra)


def test_missing_data_dir_points_to_the_download(tmp_path):
  proc = _train(tmp_path / "run", None)  # the default data/multi30k, not downloaded here
  assert conftest.error_line(proc) == (
      "error: data/multi30k: no such directory; `python -m experiments.download` puts "
      "Multi30k there")
  assert not (tmp_path / "run").exists()


def test_data_dir_that_does_not_exist(tmp_path):
  proc = _train(tmp_path / "run", str(tmp_path / "nowhere"))
  assert conftest.error_line(proc) == f"error: {tmp_path / 'nowhere'}: no such directory"


def test_missing_split_file(tmp_path):
  data_dir = helpers.write_corpus(tmp_path, splits=("train",))
  proc = _train(tmp_path / "run", data_dir)
  assert conftest.error_line(proc) == f"error: {tmp_path / 'val.en'}[.gz]: no such file"


def test_line_count_mismatch(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  with open(tmp_path / "train.de", "a", encoding="utf-8") as f:
    f.write("ONE MORE\n")
  proc = _train(tmp_path / "run", data_dir)
  assert conftest.error_line(proc) == (
      f"error: {tmp_path / 'train.en'} has 64 lines but {tmp_path / 'train.de'} has 65")


def test_distilled_targets_of_another_line_count(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  teacher = tmp_path / "teacher.de"
  teacher.write_text("EIN\nZWEI\n", encoding="utf-8")
  proc = _train(tmp_path / "run", data_dir, f"--distilled_targets={teacher}")
  assert conftest.error_line(proc) == (
      f"error: {tmp_path / 'train.en'} has 64 lines but {teacher} has 2")
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_invalid_utf8_in_training_data(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  raw = (tmp_path / "train.en").read_bytes().split(b"\n")
  raw[2] = b"caf\xc3"  # a truncated two-byte sequence
  (tmp_path / "train.en").write_bytes(b"\n".join(raw))
  proc = _train(tmp_path / "run", data_dir)
  assert conftest.error_line(proc) == (
      f"error: {tmp_path / 'train.en'}:3: invalid UTF-8 (byte 0xc3 at column 4)")


def test_empty_file(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  (tmp_path / "val.de").write_bytes(b"")
  proc = _train(tmp_path / "run", data_dir)
  assert conftest.error_line(proc) == f"error: {tmp_path / 'val.de'}: empty file"


@pytest.mark.long
def test_bad_data_keeps_an_existing_run(tmp_path):
  """A resumed run whose data went bad stops before touching checkpoints or logs."""
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, data_dir).returncode == 0
  before = conftest.snapshot(workdir)
  (tmp_path / "val.de").write_bytes(b"")
  proc = _train(workdir, data_dir, "--num_steps=4")
  assert conftest.error_line(proc) == f"error: {tmp_path / 'val.de'}: empty file"
  assert conftest.snapshot(workdir) == before


@pytest.mark.parametrize("flag, named", [
    ("--no_such_flag=1", "no_such_flag"),
    ("--attention=bogus", "attention"),
    ("--cell=rnn", "cell"),
    ("--hidden_size=0", "hidden_size"),
    ("--batch_size=-8", "batch_size"),
    ("--dropout=1.5", "dropout"),
    ("--subword_dropout=0.1", "subword_dropout"),
    ("--distilled_targets=teacher.de", "distilled_targets"),
])
def test_invalid_flags(tmp_path, flag, named):
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'run'}", flag)
  line = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert line.startswith("error: ") and named in line
  assert not (tmp_path / "run").exists()


def test_checkpoint_with_another_vocabulary(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, data_dir).returncode == 0
  (workdir / "spm.ende.model").unlink()  # the next run trains one on other text
  other = tmp_path / "other"
  other.mkdir()
  helpers.write_corpus(other)
  lines = (other / "train.de").read_text(encoding="utf-8").splitlines()
  (other / "train.de").write_text("".join(l[::-1] + "\n" for l in lines), encoding="utf-8")
  before = conftest.snapshot(workdir / "checkpoints")
  proc = _train(workdir, str(other), "--num_steps=4")
  assert "trained with another vocabulary" in conftest.error_line(proc)
  assert conftest.snapshot(workdir / "checkpoints") == before


def test_corrupted_checkpoints(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = tmp_path / "run"
  assert _train(workdir, data_dir).returncode == 0
  for path in (workdir / "checkpoints").rglob("*"):
    if path.is_file() and "state" in path.parts:
      path.write_bytes(b"")
  proc = _train(workdir, data_dir, "--num_steps=4")
  assert "no checkpoint is readable" in conftest.error_line(proc)


def test_batch_size_that_does_not_divide_among_the_devices(tmp_path):
  proc = conftest.run_program(
      "train", f"--workdir={tmp_path / 'run'}", "--batch_size=7", "--num_steps=1",
      env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert conftest.error_line(proc) == "error: flag --batch_size: 7 does not divide among 2 devices"
  assert not (tmp_path / "run").exists()


def test_num_heads_that_does_not_divide_is_one_line(tmp_path):
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'run'}",
                              "--attention=multihead_additive", "--num_heads=3")
  assert conftest.error_line(proc) == (
      "error: flag --num_heads: 3 must divide attention_size (128) and the encoder output "
      "size (256) for multihead_additive")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, line", [
    (["--attention=monotonic", "--coverage_loss_weight=1"],
     "error: flag --coverage_loss_weight: compares weights that sum to 1 over the source with "
     "their running sum; monotonic attention's do not (use a global, sparse, multi-head or "
     "coverage variant)"),
    (["--attention=coverage_additive", "--coverage_loss_weight=-1"],
     "error: flag --coverage_loss_weight=-1: -1.0 is not a non-negative number"),
    (["--attention=entmax15_local_p_dot"], None),
])
def test_bad_variant_options_are_one_line(tmp_path, flags, line):
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'run'}", *flags)
  error = conftest.error_line(proc)
  if line is not None:
    assert error == line
  else:
    assert error.startswith("error: flag --attention=entmax15_local_p_dot: value should be one of")
  assert proc.returncode == 1 and not (tmp_path / "run").exists()
