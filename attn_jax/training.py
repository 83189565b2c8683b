"""train_and_evaluate: the training loop, its logging, evaluation and checkpoints."""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from attn_jax import attention, data, metrics, plots, steps, tasks
from attn_jax.checkpoint import Checkpointer
from attn_jax.config import Config, incompatible_fields
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
  saved = Config.from_dict(ckpt.metadata(latest)["config"])
  differing = incompatible_fields(saved, config)
  if differing:
    raise IncompatibleCheckpointError(
        f"{directory}: checkpoint at step {latest} has another config; differing fields: "
        + ", ".join(f"{f} (saved {_get(saved, f)!r}, now {_get(config, f)!r})"
                    for f in differing))
  target = jax.eval_shape(init)._asdict()
  state, _ = ckpt.restore(latest, target)
  return steps.TrainState(**state)


def _get(config: Config, dotted: str):
  section, name = dotted.split(".")
  return getattr(getattr(config, section), name)


def _plot_attention(examples: list[Example], step: int, workdir: str, log: RunLog) -> None:
  names = tasks.token_names
  items = [(e.weights, names(e.src), names(e.output)) for e in examples]
  fig = plots.attention_grid(items, title=f"attention at step {step}")
  fig.savefig(os.path.join(workdir, "plots", f"attention_{step}.png"), dpi=100)
  log.figure("eval/attention", fig, step)


def _train_rates(window: list[dict], seconds: float) -> dict[str, float]:
  sums = {k: sum(float(w[k]) for w in window) for k in window[0]}
  rates = metrics.summarize(sums)
  rates["grad_norm"] = sums["grad_norm_sum"] / sums["steps"]
  rates["tokens_per_sec"] = sums["token_count"] / max(seconds, 1e-9)
  return rates


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
  eval_step = steps.make_eval_step(config.model)
  greedy = steps.make_greedy(config.model, max_len=eval_ds.tgt_out.shape[1])
  has_weights = attention.VARIANTS[config.model.attention].has_weights
  _, k_train = _keys(tc.seed)
  log = RunLog(workdir, start, tc.num_steps)
  result: dict[str, float] = {}
  print(f"devices: {jax.devices()} | start step {start} of {tc.num_steps} | "
        f"train {data.size(train_ds)} / eval {data.size(eval_ds)} examples", flush=True)

  if start >= tc.num_steps:
    print(f"already trained to step {start}; evaluating", flush=True)
    result, _ = evaluate(state.params, eval_ds, tc.batch_size, eval_step, greedy, 0, has_weights)
  window, window_start = [], time.time()
  for step in range(start, tc.num_steps):
    batch = data.train_batch(train_ds, step, tc.batch_size, config.data.seed)
    state, sums = train_step(state, batch, jax.random.fold_in(k_train, step))
    window.append(sums)
    done = step + 1
    if done % tc.log_every == 0 or done == tc.num_steps:
      rates = _train_rates(jax.device_get(window), time.time() - window_start)
      if not np.isfinite(rates["loss"]):
        ckpt.wait()
        raise NonFiniteLossError(
            f"loss is {rates['loss']} at step {done}; last checkpoint: step {ckpt.latest_step()}")
      log.write(done, "train", rates)
      log.progress(done, rates)
      window, window_start = [], time.time()
    is_eval = done % tc.eval_every == 0 or done == tc.num_steps
    paused = time.time()
    if is_eval:
      result, examples = evaluate(state.params, eval_ds, tc.batch_size, eval_step, greedy,
                                  tc.num_plots, has_weights)
      log.write(done, "eval", result)
      print(f"eval at step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()),
            flush=True)
      if has_weights and examples:
        _plot_attention(examples, done, workdir, log)
    if is_eval or done % tc.checkpoint_every == 0:
      metadata = {"config": config.to_dict(),
                  "data_position": data.data_position(train_ds, done, tc.batch_size),
                  "seed_key": np.asarray(jax.random.key_data(k_train)).tolist()}
      ckpt.save(done, state._asdict(), metadata, result.get(SCORE) if is_eval else None)
    window_start += time.time() - paused  # tokens/s counts training time only
  ckpt.wait()
  ckpt.close()
  log.close()
  plots.curves(read_records(log.path), os.path.join(workdir, "plots", "curves.png"))
  return result
