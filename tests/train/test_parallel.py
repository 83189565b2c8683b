"""Data parallelism: the same training on 4 (forced host) devices as on one."""

from __future__ import annotations

import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import conftest
import helpers
from attn_jax.config import ConfigError
from attn_jax.train import inference, parallel, runlog

pytestmark = pytest.mark.slow

TINY = ["--embed_size=8", "--hidden_size=8", "--attention_size=8", "--vocab_size=8",
        "--max_len=5", "--train_size=64", "--eval_size=16", "--batch_size=8",
        "--warmup_steps=2", "--cooldown_steps=2", "--num_steps=6", "--log_every=1",
        "--eval_every=3", "--checkpoint_every=3", "--num_plots=0"]


def _train(workdir, devices: int, *extra: str):
  env_extra = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return conftest.run_program("train", f"--workdir={workdir}", *TINY, *extra, env=env_extra)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  """The workdir of TINY trained on one device: the reference of the sharded runs."""
  workdir = tmp_path_factory.mktemp("one")
  proc = _train(workdir, 1)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir


def test_four_devices_train_like_one_and_restore_on_one(tmp_path, one_device):
  four = tmp_path / "four"
  proc = _train(four, 4)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "CpuDevice(id=3)" in proc.stdout
  # Same losses and parameters to float tolerance (the all-reduce sums in another order).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               helpers.saved_params(str(four), 6), helpers.saved_params(str(one_device), 6))
  # The 4-device checkpoint resumes on one device.
  resumed = _train(four, 1, "--num_steps=9")
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "start step 6 of 9" in resumed.stdout


def test_batch_size_must_divide_among_devices():
  placement = parallel.Placement(jax.devices()[:1])
  placement.check_batch_size(7)  # one device: anything goes
  placement.device_count = 4  # as a 4-device machine would count
  with pytest.raises(ConfigError, match="batch_size: 6 does not divide among 4 devices"):
    placement.check_batch_size(6)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.long
def test_two_processes_train_checkpoint_resume_and_agree(tmp_path, one_device):
  two = tmp_path / "two"

  def both(*extra: str) -> list[subprocess.CompletedProcess]:
    address = f"localhost:{_free_port()}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "experiments.train", f"--workdir={two}", *TINY, *extra,
         f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}"],
        cwd=conftest.ROOT, env=conftest.subprocess_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out)
            for p, out in zip(procs, outputs)]

  first = both()
  assert [p.returncode for p in first] == [0, 0], first[1].stderr[-2000:]
  ours = lambda out: [l for l in out.splitlines() if not l.startswith("[Gloo]")]
  assert "start step 0 of 6" in first[0].stdout and ours(first[1].stdout) == []
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
               helpers.saved_params(str(two), 6), helpers.saved_params(str(one_device), 6))
  resumed = both("--num_steps=9")
  assert [p.returncode for p in resumed] == [0, 0], resumed[1].stderr[-2000:]
  assert "start step 6 of 9" in resumed[0].stdout


@pytest.mark.long
def test_seeds_on_two_devices_train_like_one(tmp_path):
  """--num_seeds=2 on a 2-device mesh (seed axis replicated, rows split) as on one device."""
  one, two = tmp_path / "one", tmp_path / "two"
  for workdir, devices in ((one, 1), (two, 2)):
    proc = _train(workdir, devices, "--num_seeds=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
  assert "CpuDevice(id=1)" in proc.stdout
  evals = lambda w: [(r["step"], r["split"], r["loss"])
                     for r in runlog.read_records(str(w / "metrics.jsonl"))
                     if r["split"].startswith("eval")]
  for (step_a, split_a, a), (step_b, split_b, b) in zip(evals(one), evals(two), strict=True):
    assert (step_a, split_a) == (step_b, split_b)
    np.testing.assert_allclose(a, b, rtol=2e-5)
  for k in range(2):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                 inference.load(str(two), "latest", k, translation_only=False).params,
                 inference.load(str(one), "latest", k, translation_only=False).params)
