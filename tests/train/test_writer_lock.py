"""writer_lock: one writer per workdir, released on any exit, a dead holder's lock taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import conftest
from attn_jax.train import writer_lock

HOLD = """
import sys, time
from attn_jax.train import writer_lock
lock = writer_lock.WriterLock(sys.argv[1], "holder").acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _holder(workdir: str) -> subprocess.Popen:
  proc = subprocess.Popen([sys.executable, "-c", HOLD, workdir], stdout=subprocess.PIPE,
                          text=True, env=conftest.subprocess_env())
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "w")
  holder = _holder(workdir)
  try:
    with pytest.raises(writer_lock.WorkdirBusyError, match=rf"holder \(PID {holder.pid} on"):
      writer_lock.WriterLock(workdir, "second").acquire()
  finally:
    holder.kill()
    holder.wait()


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  holder = _holder(workdir)
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait()
  with writer_lock.WriterLock(workdir, "next"):
    assert f"PID {holder.pid}" in capsys.readouterr().out  # the note names the dead holder
    with open(os.path.join(workdir, writer_lock.LOCK_NAME), encoding="utf-8") as f:
      assert f.read().startswith(f"next (PID {os.getpid()} on")


def test_released_on_exit_and_nothing_taken_over_after_a_clean_release(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  os.makedirs(workdir)
  with writer_lock.WriterLock(workdir, "first"):
    pass
  with writer_lock.WriterLock(workdir, "second"):
    assert "taking it over" not in capsys.readouterr().out
  assert os.listdir(workdir) == [writer_lock.LOCK_NAME]  # it existed before: kept


def test_a_workdir_it_created_and_left_empty_is_removed(tmp_path):
  workdir = str(tmp_path / "new")
  with writer_lock.WriterLock(workdir, "train"):
    assert os.path.isdir(workdir)
  assert not os.path.exists(workdir)
  with writer_lock.WriterLock(workdir, "train"):
    open(os.path.join(workdir, "config.json"), "w", encoding="utf-8").close()
  assert sorted(os.listdir(workdir)) == [writer_lock.LOCK_NAME, "config.json"]


def test_a_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(NotADirectoryError, match="names a file"):
    writer_lock.WriterLock(str(path), "train").acquire()
