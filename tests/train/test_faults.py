"""Faults during training: non-finite updates are skipped and bounded; SIGTERM checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import conftest
import helpers
from attn_jax.train import loop, resume, steps

pytestmark = pytest.mark.slow


def _poisoned(params: dict) -> dict:
  """params with NaN target embeddings: every loss and gradient becomes NaN."""
  embed = params["decoder"]["embed"]["embedding"]
  return {**params, "decoder": {**params["decoder"],
                                "embed": {"embedding": embed * np.float32("nan")}}}


def test_a_nonfinite_step_applies_no_update(rng):
  config = helpers.tiny_config()
  optimizer = steps.make_optimizer(config.train)
  state = steps.init_state(jax.random.key(0), config.model, optimizer)
  state = state._replace(params=_poisoned(state.params))
  before = jax.device_get(state)  # the step donates its input buffers
  batch = helpers.random_batch(rng, [3, 5], [4, 2], 6, 5)
  train_step = steps.make_train_step(config.model, config.train, optimizer)
  after, sums = jax.device_get(train_step(state, batch, jax.random.key(1)))
  assert int(after.step) == int(before.step) + 1
  assert int(sums["nonfinite_steps"]) == 1 and int(sums["steps"]) == 0
  assert float(sums["loss_sum"]) == 0.0 and int(sums["token_count"]) == 0
  jax.tree.map(np.testing.assert_array_equal, after.params, before.params)
  jax.tree.map(np.testing.assert_array_equal, after.opt_state, before.opt_state)


def test_training_stops_after_max_consecutive_nonfinite_steps(tmp_path, monkeypatch):
  init = steps.init_state
  monkeypatch.setattr(steps, "init_state",
                      lambda *a: (s := init(*a))._replace(params=_poisoned(s.params)))
  config = helpers.tiny_config(train_overrides=dict(num_steps=12, log_every=2,
                                                    max_nonfinite_steps=3, eval_every=6,
                                                    checkpoint_every=2))
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"^4 consecutive steps with a non-finite loss or gradient, the last "
                           r"at step 4 \(--max_nonfinite_steps=3\).*last checkpoint: step 2$"):
    loop.train_and_evaluate(config, str(tmp_path))


TINY = ["--embed_size=8", "--hidden_size=8", "--attention_size=8", "--vocab_size=8",
        "--max_len=5", "--train_size=64", "--eval_size=16", "--batch_size=8",
        "--warmup_steps=2", "--cooldown_steps=5", "--num_steps=200", "--log_every=1",
        "--eval_every=200", "--checkpoint_every=200", "--num_plots=0"]


def _start_training(workdir: str, flags: list[str], stderr) -> subprocess.Popen:
  """experiments.train in the background, its console lines readable from .stdout."""
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *flags],
      cwd=conftest.ROOT, env=conftest.subprocess_env(), stdout=subprocess.PIPE, stderr=stderr,
      text=True)


def test_sigterm_checkpoints_and_the_rerun_matches_an_uninterrupted_run(tmp_path):
  interrupted, whole = str(tmp_path / "interrupted"), str(tmp_path / "whole")
  proc = _start_training(interrupted, TINY, stderr=subprocess.PIPE)
  for line in proc.stdout:
    if line.startswith("step 3/"):
      proc.send_signal(signal.SIGTERM)
      break
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-2000:]
  stopped = [l for l in out.splitlines() if l.startswith("stopped by SIGTERM at step ")]
  assert len(stopped) == 1 and "Traceback" not in err
  step = int(stopped[0].split()[5].rstrip(":"))
  assert 3 <= step < 200
  assert os.path.isdir(os.path.join(interrupted, "checkpoints", str(step)))
  resumed = conftest.run_program("train", f"--workdir={interrupted}", *TINY)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"start step {step} of 200" in resumed.stdout
  assert conftest.run_program("train", f"--workdir={whole}", *TINY).returncode == 0
  jax.tree.map(np.testing.assert_array_equal, helpers.saved_params(interrupted, 200),
               helpers.saved_params(whole, 200))


def _corrupt(workdir: str, step: int) -> None:
  """Truncates every file of a checkpoint's state item, as a crash mid-write might."""
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(step), "state")):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(max(0, os.path.getsize(os.path.join(root, name)) // 3))


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
  config = helpers.tiny_config(train_overrides=dict(num_steps=6, eval_every=3,
                                                    checkpoint_every=3, keep_checkpoints=2))
  whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
  loop.train_and_evaluate(config, whole)
  loop.train_and_evaluate(config, broken)
  _corrupt(broken, 6)
  capsys.readouterr()
  loop.train_and_evaluate(config, broken)  # resumes from step 3 and trains 3 -> 6 again
  out = capsys.readouterr().out
  assert "checkpoint at step 6 is unreadable" in out and "start step 3 of 6" in out
  assert os.path.isdir(os.path.join(broken, "checkpoints", "6.unreadable"))
  jax.tree.map(np.testing.assert_array_equal, helpers.saved_params(broken, 6),
               helpers.saved_params(whole, 6))


def test_no_readable_checkpoint_is_one_clear_error(tmp_path):
  config = helpers.tiny_config(train_overrides=dict(num_steps=3, eval_every=3,
                                                    checkpoint_every=3))
  loop.train_and_evaluate(config, str(tmp_path))
  _corrupt(str(tmp_path), 3)
  with pytest.raises(resume.CorruptCheckpointError, match="no checkpoint is readable"):
    loop.train_and_evaluate(config, str(tmp_path))


# Checkpoints every step, 30 steps: a SIGKILL lands while one is being written.
KILL_FLAGS = [f for f in TINY if not f.startswith(("--checkpoint_every", "--num_steps"))] + [
    "--checkpoint_every=1", "--num_steps=30"]


@pytest.fixture(scope="module")
def uninterrupted_30(tmp_path_factory) -> dict:
  """Final parameters of the run of KILL_FLAGS that nothing interrupts."""
  whole = str(tmp_path_factory.mktemp("whole"))
  assert conftest.run_program("train", f"--workdir={whole}", *KILL_FLAGS).returncode == 0
  return helpers.saved_params(whole, 30)


@pytest.mark.parametrize("kill_after", [2, pytest.param(9, marks=pytest.mark.long)])
def test_kill_9_at_any_moment_resumes_to_the_same_parameters(tmp_path, kill_after,
                                                             uninterrupted_30):
  """SIGKILL while checkpoints are being written every step (asynchronously): the rerun
  resumes from the last complete one and ends bitwise equal to an uninterrupted run."""
  killed = str(tmp_path / "killed")
  proc = _start_training(killed, KILL_FLAGS, stderr=subprocess.DEVNULL)
  for line in proc.stdout:
    if line.startswith(f"step {kill_after}/"):
      proc.kill()
      break
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  resumed = conftest.run_program("train", f"--workdir={killed}", *KILL_FLAGS)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  jax.tree.map(np.testing.assert_array_equal, helpers.saved_params(killed, 30), uninterrupted_30)
