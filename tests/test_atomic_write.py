"""atomic_write.py: whole files or none, no temporary file left behind."""

from __future__ import annotations

import os

import pytest

from attn_jax import atomic_write


def test_text_and_bytes_replace_the_file_and_leave_no_temporary(tmp_path):
  path = str(tmp_path / "out.txt")
  atomic_write.write_atomically(path, "é\n")
  assert open(path, "rb").read() == "é\n".encode("utf-8")
  atomic_write.write_atomically(path, b"\x00\x01")
  assert open(path, "rb").read() == b"\x00\x01" and os.listdir(tmp_path) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
  path = str(tmp_path / "out.txt")
  atomic_write.write_atomically(path, "old")
  with pytest.raises(TypeError):
    atomic_write.write_atomically(path, object())  # neither text nor bytes
  assert open(path, encoding="utf-8").read() == "old" and os.listdir(tmp_path) == ["out.txt"]
