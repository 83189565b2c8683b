"""experiments.download as a subprocess: a line per file, one error line, from the mirror."""

from __future__ import annotations

import os
import shutil

import pytest

import conftest
from attn_jax.data import multi30k

MIRROR = os.path.join(conftest.ROOT, "..", "shared", "data", "multi30k")
needs_mirror = pytest.mark.skipif(not os.path.isdir(MIRROR), reason="Multi30k mirror not present")


@needs_mirror
def test_the_program_one_line_per_file_and_one_error_line(tmp_path):
  target = tmp_path / "data"
  proc = conftest.run_program("download", f"--data_dir={target}", f"--base_url={MIRROR}",
                              "--langs=en,de", "--splits=val,test_2016_flickr")
  assert proc.returncode == 0, proc.stderr
  assert len([line for line in proc.stdout.splitlines() if "SHA-256 verified" in line]) == 4
  missing = conftest.run_program("download", f"--data_dir={target}", f"--base_url={MIRROR}",
                                 "--langs=cs", "--splits=val")
  assert conftest.error_line(missing).startswith(
      f"error: {multi30k.base_url(MIRROR)}val.cs.gz: No such file or directory")
  unknown = conftest.run_program("download", f"--data_dir={target}", "--langs=en,xx")
  assert conftest.error_line(unknown) == (
      "error: flag --langs: unknown language xx; known: en, de, fr, cs")
  shutil.rmtree(target)


def test_a_data_dir_that_cannot_be_written_is_one_line(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  proc = conftest.run_program("download", f"--data_dir={a_file}", "--langs=en",
                              "--splits=val", f"--base_url={tmp_path}")
  assert conftest.error_line(proc) == f"error: {a_file}: File exists"
