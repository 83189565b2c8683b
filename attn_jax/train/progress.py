"""What the training log reports between evaluations: the rates of a window of steps,
target tokens per second of training alone, and runs of non-finite steps."""

from __future__ import annotations

import time

import numpy as np

from attn_jax.evaluation import metrics


def train_rates(window: list[dict]) -> dict[str, float]:
  """Rates of the window's steps (their sums fetched to the host, one dict per step); of
  stacked runs ([N] sums) pooled, plus each run's loss as loss_seed<k>."""
  per_run = {k: np.sum([np.asarray(w[k], np.float64) for w in window], axis=0)
             for k in window[0]}  # [] or [N]
  sums = {k: float(np.sum(v)) for k, v in per_run.items()}
  rates = metrics.summarize(sums)
  rates["grad_norm"] = sums["grad_norm_sum"] / sums["steps"] if sums["steps"] else float("nan")
  rates["nonfinite_steps"] = int(sums["nonfinite_steps"])
  for k in range(per_run["loss_sum"].size if per_run["loss_sum"].ndim else 0):
    run_sums = {name: v[k] for name, v in per_run.items()}
    rates[f"loss_seed{k}"] = metrics.summarize(run_sums)["loss"]
  return rates


def nonfinite_run(run: int, window: list[dict]) -> int:
  """Consecutive steps (of any stacked run) skipped as non-finite at the end of `window`,
  continuing `run`."""
  for sums in window:
    run = run + 1 if np.any(sums["nonfinite_steps"]) else 0
  return run


class Throughput:
  """Target tokens per second of training alone: compilation, evaluation and saves excluded."""

  def __init__(self):
    self.restart()

  def restart(self) -> None:
    self.tokens, self.seconds, self._since = 0, 0.0, time.time()

  def pause(self) -> None:
    self.seconds += time.time() - self._since

  def resume(self) -> None:
    self._since = time.time()

  def elapsed(self) -> float:
    """Seconds since the last restart or resume."""
    return time.time() - self._since

  def rate(self) -> float | None:
    """Tokens/s since the last call; None if no tokens were counted since."""
    self.pause()
    rate = self.tokens / self.seconds if self.tokens else None
    self.tokens, self.seconds = 0, 0.0
    self.resume()
    return rate
