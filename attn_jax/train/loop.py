"""train_and_evaluate: the training loop, its evaluations and checkpoints (what it logs
between them: progress.py; early stopping and the plateau: early_stopping.py)."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, NamedTuple

import jax
import numpy as np

from attn_jax import compiling, memory as memory_lib
from attn_jax.config import Config
from attn_jax.data import pipeline
from attn_jax.data.dataset import Batch
from attn_jax.decode import searches
from attn_jax.evaluation import held_out, plots
from attn_jax.evaluation.held_out import Example
from attn_jax.model import attention
from attn_jax.train import (checkpoint, early_stopping, fine_tune, parallel, progress, resume,
                            seeds, steps, writer_lock)
from attn_jax.train.checkpoint import Checkpointer
from attn_jax.train.runlog import RunLog, read_records

# The validation metric that picks the best checkpoint (higher is better).
class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


def _plot_attention(examples: list[Example], step: int, workdir: str, log: RunLog,
                    names: tuple[Callable, Callable], split: str) -> None:
  src_names, tgt_names = names
  items = [(e.weights, src_names(e.src), tgt_names(e.output)) for e in examples]
  fig = plots.attention_grid(items, title=f"attention at step {step}")
  suffix = split.removeprefix("eval")
  fig.savefig(os.path.join(workdir, "plots", f"attention_{step}{suffix}.png"), dpi=100)
  log.figure(f"{split}/attention", fig, step)


class _Context(NamedTuple):
  """What the loop and the evaluations need besides the state."""
  config: Config
  workdir: str
  data: pipeline.RunData
  train_step: Callable
  eval_step: Callable
  search: Callable  # greedy: (params, src, src_len) -> Hypotheses
  ckpt: Checkpointer
  log: RunLog | None
  stop_requested: Callable[[], str | None]  # the reason to stop now (e.g. "SIGTERM"), or None
  progress: Callable[[], None]  # told of each evaluation batch and decode call
  memory: memory_lib.HostMemory  # host-memory hooks: after compilations, around evaluations
  placement: parallel.Placement  # the devices: batches split over them, state replicated
  init_from: dict | None  # fine_tune.Origin of a fine-tuned run's parameters; None if fresh


def _bleu_due(ctx: _Context, step: int) -> bool:
  tc = ctx.config.train
  return not tc.bleu_every or step % tc.bleu_every == 0 or step == tc.num_steps


def _evaluate(params: dict, step: int, ctx: _Context, log: RunLog | None) -> dict:
  """Evaluates on the validation data, prints, and (with a log) records and plots.

  Synthetic tasks: loss, alignment and greedy exact-sequence accuracy. Translation:
  loss and perplexity, and when BLEU is due, greedy decoding scored by sacreBLEU.
  Stacked runs (num_seeds N > 1) are evaluated one by one, each recorded as
  split "eval_seed<k>"; the result, recorded as "eval", is their mean.
  """
  n = ctx.config.train.num_seeds
  if n == 1:
    return _evaluate_run(params, step, ctx, log, "eval")
  runs = [_evaluate_run(seeds.member(params, k), step, ctx, log, f"eval_seed{k}")
          for k in range(n)]
  mean = {key: float(np.mean([r[key] for r in runs])) for key, value in runs[0].items()
          if isinstance(value, float)}
  print(f"eval at step {step}, mean of {n} seeds: " + ", ".join(
      f"{k} {v:.4f}" for k, v in mean.items()), flush=True)
  if log is not None:
    log.write(step, "eval", mean)
  return mean


def _evaluate_run(params: dict, step: int, ctx: _Context, log: RunLog | None,
                  split: str) -> dict:
  """One model's evaluation (see _evaluate), recorded as `split`."""
  tc, ev = ctx.config.train, ctx.data.eval
  has_weights = attention.VARIANTS[ctx.config.model.attention].has_weights
  num_plots = tc.num_plots if log is not None and has_weights else 0
  examples: list[Example] = []
  if ctx.data.vocabs is None:
    result, examples = held_out.evaluate(params, (b for _, b in ev.batches), ctx.eval_step,
                                           ctx.search, num_plots, has_weights, ctx.progress)
  else:
    result = held_out.loss_rates(params, ev, ctx.eval_step, ctx.progress)
    if _bleu_due(ctx, step):
      outputs = held_out.decode(params, ev, ctx.search, progress=ctx.progress)
      scores, _ = held_out.translation_scores(outputs, ev.text.tgt, ctx.data.vocabs.tgt)
      result.update(scores)
      examples = outputs[:num_plots]
  label = "" if split == "eval" else f" ({split.removeprefix('eval_')})"
  print(f"eval at step {step}{label}: " + ", ".join(
      f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)), flush=True)
  if log is not None:
    log.write(step, split, result)
    if examples:
      _plot_attention(examples, step, ctx.workdir, log,
                      pipeline.token_names(ctx.data.vocabs), split)
  return result


def _save(ckpt: Checkpointer, state: steps.TrainState, step: int, ctx: _Context,
          k_train: jax.Array, score: float | None, patience: early_stopping.Patience) -> None:
  metadata = {"config": ctx.config.to_dict(),
              "data_position": ctx.data.train.position(step),
              "vocab": pipeline.vocab_ids(ctx.data.vocabs),
              "patience": patience._asdict(),
              "init_from": ctx.init_from,
              "seed_key": np.asarray(jax.random.key_data(k_train)).tolist()}
  ckpt.save(step, state._asdict(), metadata, score)


def _write_run_files(config: Config, workdir: str, flagfile: str | None) -> None:
  os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json() + "\n")
  if flagfile is not None:
    with open(os.path.join(workdir, "flags.txt"), "w", encoding="utf-8") as f:
      f.write(flagfile)


def train_and_evaluate(config: Config, workdir: str, flagfile: str | None = None,
                       stop_requested: Callable[[], str | None] = lambda: None,
                       progress: Callable[[], None] = held_out.no_progress,
                       memory: memory_lib.HostMemory = memory_lib.NONE
                       ) -> dict[str, float]:
  """Trains, evaluating and checkpointing on the way; resumes from `workdir` if it can.

  Writes workdir/config.json, flags.txt (`flagfile`, if given), metrics.jsonl,
  checkpoints/, plots/, tensorboard/ (and the vocabularies for translation), holding
  the workdir's writer lock (writer_lock.py) all the while: a second writer gets
  WorkdirBusyError before anything is read or written. Nothing but a missing
  vocabulary is written before a checkpoint already in `workdir` is found compatible
  with `config`, and a start that fails before its first step removes the files it
  wrote (a vocabulary it trained, one it adopted). `stop_requested` is asked after
  every step; when it gives a reason, the step's state is checkpointed and
  training returns ({"stopped": reason}), to be resumed by the same call.
  `progress` is told of every evaluation batch and decode call. `memory`: the host-memory
  hooks run after compilations and around evaluations (the programs install glibc's).
  Returns the last evaluation's metrics.
  """
  placement = parallel.Placement()
  placement.check_batch_size(config.train.batch_size)
  lock = (writer_lock.WriterLock(workdir, "train") if placement.is_main_process
          else contextlib.nullcontext())
  with lock:
    os.makedirs(workdir, exist_ok=True)
    ctx, state, patience = _start(config, workdir, flagfile, stop_requested, progress, memory,
                                  placement)
    return _run(ctx, state, patience)


def _start(config: Config, workdir: str, flagfile: str | None,
           stop_requested: Callable[[], str | None], progress: Callable[[], None],
           memory: memory_lib.HostMemory, placement: parallel.Placement
           ) -> tuple[_Context, steps.TrainState, early_stopping.Patience]:
  """The run's data, its starting state (resumed, fine-tuned or fresh) and its context;
  the run files written. A failed fresh start removes the files it wrote first."""
  tc = config.train
  ckpt_dir = os.path.join(workdir, "checkpoints")
  before = set(os.listdir(workdir))
  fresh = not os.path.isdir(ckpt_dir) or not os.listdir(ckpt_dir)
  ckpt = None
  try:
    fine_tune.adopt_vocabs(config, workdir)  # init_from's, where the workdir has none
    run_data = pipeline.load(config.data, tc.batch_size, workdir,
                             seeds.shuffle_seeds(config.data, tc.num_seeds))
    optimizer = steps.make_optimizer(tc)
    ckpt = Checkpointer(ckpt_dir, keep=tc.keep_checkpoints)
    state, metadata, origin = _starting_state(config, ckpt, ckpt_dir, optimizer, run_data,
                                              placement)
  except BaseException:
    if ckpt is not None:
      with contextlib.suppress(checkpoint.CheckpointSaveError):  # nothing was saved
        ckpt.close()
    if fresh and placement.is_main_process:
      _remove_new_files(workdir, before)
    raise
  patience = early_stopping.Patience(**metadata.get("patience", early_stopping.NONE_YET._asdict()))
  main = placement.is_main_process  # process 0 alone writes logs, plots and run files
  if main:
    _write_run_files(config, workdir, flagfile)
  log = RunLog(workdir, int(state.step), tc.num_steps) if main else None
  ctx = _Context(config, workdir, run_data, steps.make_train_step(config.model, tc, optimizer),
                 memory.trimming(placement.on_batches(
                     steps.make_eval_step(config.model, tc.loss_chunk_rows), 1)),
                 memory.trimming(placement.on_batches(_search(config, run_data), 2)),
                 ckpt, log, stop_requested, progress, memory, placement, origin)
  print(f"devices: {jax.devices()} | start step {int(state.step)} of {tc.num_steps} | "
        f"{run_data.summary}", flush=True)
  return ctx, state, patience


def _remove_new_files(workdir: str, before: set[str]) -> None:
  """Removes what a failed start added to `workdir` (files, and the checkpoint directory
  while it holds no checkpoint), so a later start adopts nothing from it."""
  for name in sorted(set(os.listdir(workdir)) - before):
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      os.remove(path)
    elif os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)


def _run(ctx: _Context, state: steps.TrainState, patience: early_stopping.Patience
         ) -> dict[str, float]:
  """Trains from `state` to the configured step (or only evaluates when there), then
  closes the checkpointer and the log."""
  start, tc = int(state.step), ctx.config.train
  stopped = tc.patience and patience.waited >= tc.patience
  if start >= tc.num_steps or stopped:
    print(f"already trained to step {start}{' (stopped early)' if stopped else ''}; evaluating",
          flush=True)
    result = _evaluate(state.params, start, ctx, None)
  else:
    result = _train_loop(state, ctx, patience)
  ctx.ckpt.wait()
  ctx.ckpt.close()
  if ctx.log is not None:
    ctx.log.close()
    plots.curves(read_records(ctx.log.path), os.path.join(ctx.workdir, "plots", "curves.png"))
  return result


def _starting_state(config: Config, ckpt: Checkpointer, ckpt_dir: str, optimizer,
                    run_data: pipeline.RunData, placement: parallel.Placement
                    ) -> tuple[steps.TrainState, dict, dict | None]:
  """(state, checkpoint metadata, fine-tuning origin): the latest checkpoint's, or a fresh
  state, or, for a fine-tuning run without a checkpoint of its own, --init_from's
  parameters."""
  vocab_ids = pipeline.vocab_ids(run_data.vocabs)
  state, metadata = resume.restore_or_init(config, ckpt, optimizer, ckpt_dir, vocab_ids,
                                           placement)
  origin = metadata.get("init_from")
  if config.train.init_from and not metadata:  # no checkpoint of its own yet
    state, origin = fine_tune.start_state(state, config, vocab_ids, optimizer)
    state, origin = placement.replicate(state), origin._asdict()
    print(f"parameters from {origin['workdir']} at step {origin['step']}", flush=True)
  return state, metadata, origin


def _search(config: Config, run_data: pipeline.RunData):
  """The evaluations' search: greedy for a synthetic task, the streaming search (beam 1)
  for translation."""
  if run_data.vocabs is None:
    max_len = run_data.eval.batches[0][1].tgt_out.shape[1]
    return searches.make_greedy(config.model, max_len=max_len)
  return searches.make_search(config.model, slots=held_out.DECODE_BATCH_SIZE)


def one_step_in_flight() -> bool:
  """Whether training dispatches a step only once the last has finished: on CPU.

  There, with asynchronous dispatch (programs that keep freed pages dispatch inline
  instead), a queued step starts on a worker thread as soon as its inputs are ready
  and allocates its temporaries then, while the last step's may not yet be freed: the
  temporaries resident double, and running the steps one by one is no slower (figures in
  experiments/results/speed.md). An accelerator keeps the next step queued while it runs
  the last.
  """
  return jax.default_backend() == "cpu"


def _compile_train_step(state: steps.TrainState, ctx: _Context, batches: dict[int, Batch],
                        key: jax.Array, leading: int, compiled: dict) -> dict:
  """`compiled` (width -> train step executable) with the widths of `batches` added,
  compiled ahead of time (compiling.compile_per_shape), and one line printed."""
  widths = ctx.data.train.widths
  new = compiling.compile_per_shape(ctx.train_step, {
      w: (state, ctx.placement.batch(b, leading), key) for w, b in batches.items()}, ctx.memory)
  compiled = {**compiled, **new.by_shape}
  print(f"train step compiled for width{'s' * (len(new.seconds) > 1)} "
        f"{', '.join(map(str, new.seconds))} ({len(compiled)} of {len(widths)} shapes) in "
        f"{sum(new.seconds.values()):.1f}s", flush=True)
  return compiled


def _train_loop(state: steps.TrainState, ctx: _Context, patience: early_stopping.Patience) -> dict:
  """Steps from state.step to num_steps (or an early stop); returns the last evaluation.

  The train step is compiled first for every width of the steps to the end of the
  current epoch (all of them, from an epoch's start), before any step's buffers exist;
  a width met later (subword_dropout) compiles when met.
  """
  tc = ctx.config.train
  _, k_train = seeds.run_keys(tc)
  leading = 0 if tc.num_seeds == 1 else 1  # stacked batches: [N, batch, width]
  start = int(state.step)
  key = seeds.step_key(k_train, start)  # read for its shape only
  run = _Run(compiled=_compile_train_step(
      state, ctx, pipeline.first_batch_per_width(ctx.data.train, start, tc.num_steps), key,
      leading, {}), window=[], timer=progress.Throughput(), bad_run=0, leading=leading,
      one_in_flight=one_step_in_flight())
  result = {}
  for step in range(start, tc.num_steps):
    state, run = _step(state, ctx, run, step, k_train)
    done = step + 1
    if done % tc.log_every == 0 or done == tc.num_steps:
      run = _log_window(ctx, run, done)
    is_eval = done % tc.eval_every == 0 or done == tc.num_steps
    if is_eval or done % tc.checkpoint_every == 0:
      run.timer.pause()
      state, patience, result = _evaluate_and_save(state, ctx, patience, done, k_train,
                                                   result, is_eval)
      run.timer.resume()
      if tc.patience and patience.waited >= tc.patience:
        print(f"stopping early at step {done}: no better "
              f"{early_stopping.score_name(ctx.config)} in {patience.waited} evaluations "
              f"(best {patience.best:.4f} at step {patience.best_step})", flush=True)
        break
    reason = ctx.stop_requested()
    if reason and done < tc.num_steps:
      if ctx.ckpt.latest_step() != done:
        _save(ctx.ckpt, state, done, ctx, k_train, None, patience)
      print(f"stopped by {reason} at step {done}: checkpoint saved; run the same command "
            f"to resume", flush=True)
      return {**result, "stopped": reason}
  return result


class _Run(NamedTuple):
  """The loop's bookkeeping between steps."""
  compiled: dict  # width -> the train step's executable
  window: list  # the steps' sums since the last log step, on the device
  timer: progress.Throughput  # target tokens per second, compilation and evaluation left out
  bad_run: int  # consecutive non-finite steps at the last log step
  leading: int  # 1 if batches are stacked [N, batch, width] (num_seeds > 1), else 0
  one_in_flight: bool  # dispatch a step only once the last has finished


def _step(state: steps.TrainState, ctx: _Context, run: _Run, step: int,
          k_train: jax.Array) -> tuple[steps.TrainState, _Run]:
  """One training step on batch `step` (its width compiled first if new)."""
  batch = ctx.data.train.batch(step)
  width = batch.src.shape[-1]
  compiled = run.compiled
  if width not in compiled:  # kept out of tokens/s
    run.timer.pause()
    compiled = _compile_train_step(state, ctx, {width: batch}, seeds.step_key(k_train, step),
                                   run.leading, compiled)
    run.timer.resume()
  if run.one_in_flight:
    jax.block_until_ready(state)
  state, sums = compiled[width](state, ctx.placement.batch(batch, run.leading),
                                seeds.step_key(k_train, step))
  run.timer.tokens += int(batch.tgt_len.sum())
  run.window.append(sums)  # as before the split: no copy of the window per step
  return state, run._replace(compiled=compiled)


def _log_window(ctx: _Context, run: _Run, done: int) -> _Run:
  """Fetches the window's sums, logs their rates; NonFiniteLossError after too many
  consecutive non-finite steps."""
  tc = ctx.config.train
  window = ctx.placement.fetch(run.window)
  rates = progress.train_rates(window)
  tokens_per_sec = run.timer.rate()
  if tokens_per_sec is not None:
    rates["tokens_per_sec"] = tokens_per_sec
  if ctx.log is not None:
    ctx.log.write(done, "train", rates)
    ctx.log.progress(done, rates)
  bad_run = progress.nonfinite_run(run.bad_run, window)
  if bad_run >= tc.max_nonfinite_steps:
    ctx.ckpt.wait()
    raise NonFiniteLossError(
        f"{bad_run} consecutive steps with a non-finite loss or gradient, the last at step "
        f"{done} (--max_nonfinite_steps={tc.max_nonfinite_steps}); their updates were "
        f"skipped; last checkpoint: step {ctx.ckpt.latest_step()}")
  return run._replace(window=[], bad_run=bad_run)


def _evaluate_and_save(state: steps.TrainState, ctx: _Context, patience: early_stopping.Patience,
                       done: int, k_train: jax.Array, result: dict, is_eval: bool
                       ) -> tuple[steps.TrainState, early_stopping.Patience, dict]:
  """At an evaluation step: evaluate, update patience, lower the rate on a plateau; then
  checkpoint (with the score, if evaluated). Returns the state, patience and last result."""
  tc = ctx.config.train
  score = None
  if is_eval:
    ctx.memory.release_freed()  # the steps' kept temporaries, before evaluation compiles
    result = _evaluate(state.params, done, ctx, ctx.log)
    ctx.memory.release_compiler_code()  # its searches may have compiled
    score = result.get(early_stopping.score_name(ctx.config))
    patience = patience.update(score, done)
    if early_stopping.on_plateau(patience, score, tc.plateau_patience):
      state = steps.lower_rate(state, tc.plateau_factor)
      scale = steps.rate_scale(state)
      print(f"no better {early_stopping.score_name(ctx.config)} in {patience.waited} evaluations: "
            f"learning rate scaled by {scale:g}", flush=True)
      if ctx.log is not None:
        ctx.log.write(done, "plateau", {"lr_scale": scale})
  _save(ctx.ckpt, state, done, ctx, k_train, score, patience)
  return state, patience, result
