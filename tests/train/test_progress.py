"""The training log's rates of a window of steps, pooled over stacked runs, and the count
of consecutive non-finite steps."""

from __future__ import annotations

import numpy as np
import pytest

from attn_jax.train import progress


def _sums(loss, tokens, nonfinite=0.0, grad_norm=1.0):
  return {"loss_sum": np.asarray(loss), "token_count": np.asarray(tokens),
          "grad_norm_sum": np.asarray(grad_norm), "steps": np.asarray(1.0),
          "nonfinite_steps": np.asarray(nonfinite)}


def test_one_run_pools_the_window_by_tokens():
  rates = progress.train_rates([_sums(6.0, 3.0, grad_norm=2.0), _sums(2.0, 1.0, grad_norm=4.0)])
  assert rates["loss"] == pytest.approx(8.0 / 4.0)
  assert rates["grad_norm"] == pytest.approx(3.0)
  assert rates["nonfinite_steps"] == 0 and "loss_seed0" not in rates


def test_stacked_runs_pool_and_keep_each_runs_loss():
  stacked = {"grad_norm_sum": np.asarray([1.0, 3.0]), "steps": np.ones(2),
             "nonfinite_steps": np.zeros(2)}  # every sum [N] for N = 2 runs
  window = [_sums([4.0, 1.0], [2.0, 1.0]) | stacked, _sums([2.0, 2.0], [2.0, 1.0]) | stacked]
  rates = progress.train_rates(window)
  assert rates["loss"] == pytest.approx(9.0 / 6.0)  # all runs' tokens together
  assert rates["loss_seed0"] == pytest.approx(6.0 / 4.0)
  assert rates["loss_seed1"] == pytest.approx(3.0 / 2.0)
  assert rates["grad_norm"] == pytest.approx(2.0)


def test_nonfinite_run_counts_consecutive_steps_across_windows():
  bad, good = _sums(0.0, 1.0, nonfinite=1.0), _sums(1.0, 1.0)
  assert progress.nonfinite_run(0, [bad, bad]) == 2
  assert progress.nonfinite_run(2, [bad]) == 3  # continues the last window's run
  assert progress.nonfinite_run(3, [bad, good]) == 0
  stacked_one_bad = {"nonfinite_steps": np.asarray([0.0, 1.0])}
  assert progress.nonfinite_run(0, [stacked_one_bad]) == 1  # any stacked run counts


def test_throughput_leaves_paused_time_out(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress.time, "time", lambda: clock[0])
  timer = progress.Throughput()
  clock[0] += 2.0  # 2 s of training
  timer.tokens += 100
  timer.pause()
  clock[0] += 30.0  # an evaluation: left out
  timer.resume()
  clock[0] += 2.0
  timer.tokens += 100
  assert timer.rate() == pytest.approx(200 / 4.0)
  assert timer.rate() is None  # nothing counted since
