"""train_and_evaluate: the training loop, its logging, evaluation and checkpoints."""

from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from attn_jax import attention, data, metrics, plots, steps, tasks
from attn_jax.checkpoint import Checkpointer
from attn_jax.config import Config, field_value, incompatible_fields
from attn_jax.evaluation import Example, evaluate
from attn_jax.runlog import RunLog, read_records

SCORE = "sequence_accuracy"  # the eval metric that picks the best checkpoint


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint of another configuration."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(init key, base dropout key); step s uses fold_in(base, s)."""
  k_init, k_train = jax.random.split(jax.random.key(seed))
  return k_init, k_train


def restore_or_init(config: Config, ckpt: Checkpointer, optimizer,
                    directory: str) -> steps.TrainState:
  """The latest checkpoint's state, or a fresh one; follows checkpoint.py's resume order."""
  k_init, _ = _keys(config.train.seed)
  init = lambda: steps.init_state(k_init, config.model, optimizer)
  latest = ckpt.latest_step()
  if latest is None:
    return init()
  saved = ckpt.metadata(latest).get("config", {})
  differing = incompatible_fields(saved, config)
  if differing:
    raise IncompatibleCheckpointError(
        f"{directory}: checkpoint at step {latest} has another config; differing fields: "
        + ", ".join(f"{f} (saved {field_value(saved, f)!r}, now {field_value(config, f)!r})"
                    for f in differing))
  target = jax.eval_shape(init)._asdict()
  state, _ = ckpt.restore(latest, target)
  return steps.TrainState(**state)


def _plot_attention(examples: list[Example], step: int, workdir: str, log: RunLog) -> None:
  names = tasks.token_names
  items = [(e.weights, names(e.src), names(e.output)) for e in examples]
  fig = plots.attention_grid(items, title=f"attention at step {step}")
  fig.savefig(os.path.join(workdir, "plots", f"attention_{step}.png"), dpi=100)
  log.figure("eval/attention", fig, step)


def _train_rates(window: list[dict]) -> dict[str, float]:
  sums = {k: sum(float(w[k]) for w in window) for k in window[0]}
  rates = metrics.summarize(sums)
  rates["grad_norm"] = sums["grad_norm_sum"] / sums["steps"]
  return rates


class _Throughput:
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
    """Tokens/s since the last call; None if only the compiling step ran since."""
    self.pause()
    rate = self.tokens / self.seconds if self.tokens else None
    self.tokens, self.seconds = 0, 0.0
    self.resume()
    return rate


class _Evaluators(NamedTuple):
  eval_step: Callable
  greedy: Callable
  batch_size: int
  num_plots: int
  has_weights: bool


def _evaluate(params: dict, eval_ds: data.Dataset, step: int, workdir: str,
              log: RunLog | None, ev: _Evaluators) -> dict:
  """Evaluates, prints, and (with a log) records the metrics and plots the attention."""
  result, examples = evaluate(params, eval_ds, ev.batch_size, ev.eval_step, ev.greedy,
                              ev.num_plots if log else 0, ev.has_weights)
  print(f"eval at step {step}: " + ", ".join(
      f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)), flush=True)
  if log is not None:
    log.write(step, "eval", result)
    if ev.has_weights and examples:
      _plot_attention(examples, step, workdir, log)
  return result


def _save(ckpt: Checkpointer, state: steps.TrainState, step: int, config: Config,
          train_ds: data.Dataset, k_train: jax.Array, score: float | None) -> None:
  metadata = {"config": config.to_dict(),
              "data_position": data.data_position(train_ds, step, config.train.batch_size),
              "seed_key": np.asarray(jax.random.key_data(k_train)).tolist()}
  ckpt.save(step, state._asdict(), metadata, score)


def train_and_evaluate(config: Config, workdir: str, flagfile: str | None = None
                       ) -> dict[str, float]:
  """Trains, evaluating and checkpointing on the way; resumes from `workdir` if it can.

  Writes workdir/config.json, flags.txt (`flagfile`, if given), metrics.jsonl,
  checkpoints/, plots/, tensorboard/. Nothing is written before a checkpoint
  already in `workdir` is found compatible with `config`.
  Returns the last evaluation's metrics.
  """
  tc = config.train
  train_ds, eval_ds = tasks.make_datasets(config.data)
  optimizer = steps.make_optimizer(tc)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = Checkpointer(ckpt_dir, keep=tc.keep_checkpoints)
  state = restore_or_init(config, ckpt, optimizer, ckpt_dir)
  start = int(state.step)
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json() + "\n")
  if flagfile is not None:
    with open(os.path.join(workdir, "flags.txt"), "w", encoding="utf-8") as f:
      f.write(flagfile)

  train_step = steps.make_train_step(config.model, tc, optimizer)
  evaluators = _Evaluators(
      eval_step=steps.make_eval_step(config.model),
      greedy=steps.make_greedy(config.model, max_len=eval_ds.tgt_out.shape[1]),
      batch_size=tc.batch_size, num_plots=tc.num_plots,
      has_weights=attention.VARIANTS[config.model.attention].has_weights)
  log = RunLog(workdir, start, tc.num_steps)
  print(f"devices: {jax.devices()} | start step {start} of {tc.num_steps} | "
        f"train {data.size(train_ds)} / eval {data.size(eval_ds)} examples", flush=True)

  if start >= tc.num_steps:
    print(f"already trained to step {start}; evaluating", flush=True)
    result = _evaluate(state.params, eval_ds, start, workdir, None, evaluators)
  else:
    result = _train_loop(config, state, workdir, train_ds, eval_ds, train_step, evaluators,
                         ckpt, log)
  ckpt.wait()
  ckpt.close()
  log.close()
  plots.curves(read_records(log.path), os.path.join(workdir, "plots", "curves.png"))
  return result


def _train_loop(config: Config, state: steps.TrainState, workdir: str,
                train_ds: data.Dataset, eval_ds: data.Dataset, train_step: Callable,
                evaluators: _Evaluators, ckpt: Checkpointer, log: RunLog) -> dict:
  """Steps from state.step to num_steps; returns the last evaluation's metrics."""
  tc = config.train
  _, k_train = _keys(tc.seed)
  start = int(state.step)
  window, timer, result = [], _Throughput(), {}
  for step in range(start, tc.num_steps):
    batch = data.train_batch(train_ds, step, tc.batch_size, config.data.seed)
    state, sums = train_step(state, batch, jax.random.fold_in(k_train, step))
    window.append(sums)
    if step == start:  # the first call compiles: keep it out of tokens/s
      jax.block_until_ready(sums)
      print(f"train step compiled and run in {timer.elapsed():.1f}s", flush=True)
      timer.restart()
    else:
      timer.tokens += int(batch.tgt_len.sum())
    done = step + 1
    if done % tc.log_every == 0 or done == tc.num_steps:
      rates = _train_rates(jax.device_get(window))
      tokens_per_sec = timer.rate()
      if tokens_per_sec is not None:
        rates["tokens_per_sec"] = tokens_per_sec
      if not np.isfinite(rates["loss"]):
        ckpt.wait()
        raise NonFiniteLossError(
            f"loss is {rates['loss']} at step {done}; last checkpoint: step {ckpt.latest_step()}")
      log.write(done, "train", rates)
      log.progress(done, rates)
      window = []
    is_eval = done % tc.eval_every == 0 or done == tc.num_steps
    if is_eval or done % tc.checkpoint_every == 0:
      timer.pause()
      if is_eval:
        result = _evaluate(state.params, eval_ds, done, workdir, log, evaluators)
      _save(ckpt, state, done, config, train_ds, k_train, result.get(SCORE) if is_eval else None)
      timer.resume()
  return result
