"""The programs' watchdog (`experiments.watchdog` through `experiments.cli.run`): stop
signals that end a program whose main thread is blocked in a device call, and an exit
with every thread's stack when no progress is made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import conftest

pytestmark = pytest.mark.slow

# A program whose main thread blocks in a device call that never returns: the jitted
# function's host callback waits forever on a worker thread (asynchronous dispatch),
# while the main thread waits in XLA's runtime, where Python runs no signal handler.
_PROGRAM = r"""
import threading, time
import jax, jax.numpy as jnp, numpy as np
from absl import app, flags
from experiments import cli
flags.DEFINE_enum("body", "block", ["block", "progress", "python"], "")
flags.DEFINE_bool("polls", True, "")
FLAGS = flags.FLAGS
never = threading.Event()

def wait_forever(x):
  never.wait()
  return x

def blocked_call(x):
  y = jax.pure_callback(wait_forever, jax.ShapeDtypeStruct(x.shape, x.dtype), jnp.tanh(x @ x))
  return y @ y

def main(argv):
  def body(watch):
    if FLAGS.body == "block":
      print("blocking", flush=True)
      jax.jit(blocked_call)(np.ones((256, 256), np.float32)).block_until_ready()
    elif FLAGS.body == "progress":  # slow steps, each reported: never a stall
      print("blocking", flush=True)
      for _ in range(12):
        time.sleep(0.5)
        watch.progress()
      print("finished", flush=True)
    else:  # the main thread runs Python: a stop signal is seen at once
      print("blocking", flush=True)
      while not watch.stop_requested():
        time.sleep(0.05)
      print(f"stopping on {watch.stop_requested()}", flush=True)
  cli.run(body, argv, polls_stop=FLAGS.polls)

app.run(main, flags_parser=cli.parse_flags)
"""


def _start(*flags: str) -> subprocess.Popen:
  proc = subprocess.Popen([sys.executable, "-c", _PROGRAM, "--compilation_cache=none", *flags],
                          cwd=conftest.ROOT, env=conftest.subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "blocking", proc.stderr.read()
  return proc


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str, float]:
  began = time.monotonic()
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"the program did not end within {timeout}s: {err[-2000:]}")
  return proc.returncode, out, err, time.monotonic() - began


def _one_error_line(err: str) -> str:
  assert "Traceback" not in err, err[-2000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-2000:]
  return errors[0]


def test_sigterm_ends_a_blocked_program_after_the_grace_period():
  proc = _start("--stop_grace=2")
  time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  code, _, err, seconds = _finish(proc)
  assert code == 128 + signal.SIGTERM
  assert "stopped by SIGTERM (no progress in the 2s after it)" in _one_error_line(err)
  assert 1.5 < seconds < 20


def test_a_second_signal_ends_a_blocked_program_at_once():
  proc = _start("--stop_grace=600")
  proc.send_signal(signal.SIGTERM)
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  code, _, err, seconds = _finish(proc)
  assert code == 128 + signal.SIGTERM
  assert "(a second SIGTERM)" in _one_error_line(err)
  assert seconds < 20


def test_sigint_interrupts_a_program_that_does_not_poll_with_one_line():
  proc = _start("--body=python", "--nopolls")
  proc.send_signal(signal.SIGINT)
  code, out, err, _ = _finish(proc)
  assert code == 128 + signal.SIGINT
  assert _one_error_line(err) == "error: stopped by SIGINT"
  assert "stopping" not in out


def test_a_program_that_polls_stops_by_itself_on_sigterm():
  proc = _start("--body=python")
  proc.send_signal(signal.SIGTERM)
  code, out, err, _ = _finish(proc)
  assert (code, out.split()) == (0, ["stopping", "on", "SIGTERM"]), err


def test_a_stall_prints_every_threads_stack_and_exits_1():
  proc = _start("--stall_timeout=3")
  code, _, err, _ = _finish(proc)
  assert code == 1
  line = _one_error_line(err)
  assert "no step, evaluation or decoding progress for 3s (--stall_timeout=3)" in line
  assert "in wait_forever" in err and "in body" in err  # the callback's and main thread's stacks


def test_reported_progress_is_not_a_stall():
  proc = _start("--body=progress", "--stall_timeout=2")
  code, out, err, _ = _finish(proc)
  assert (code, out.split()) == (0, ["finished"]), err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX signals")
def test_the_watchdog_leaves_the_signal_handlers_as_it_found_them():
  from absl import flags  # pylint: disable=import-outside-toplevel
  from experiments import cli  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
  cli.run(lambda watch: None, ["program"])
  assert {sig: signal.getsignal(sig) for sig in before} == before
  assert signal.set_wakeup_fd(-1) == -1
