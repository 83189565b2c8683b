"""Speed and memory of training and decoding, on whatever backend JAX sees: the timed
loops that experiments/benchmark.py runs and reports.

Compilation is timed apart from running: each step function is lowered and
compiled ahead of time once per batch shape (`jit(f).lower(*args).compile()`),
and the timed loops call those compiled executables, so no timed window ever
compiles. Training windows run the real loop (batch of step s from the data,
one update, dropout key fold_in(key, s)) and end with a device sync.

Counts: target tokens are the loss's non-padding positions (subwords + EOS, no
BOS); source tokens are subwords + EOS; filler rows of short batches count as
nothing. Useful FLOPs come from flops.py (real lengths, matmuls only).
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax import compiling, config as config_lib, memory as memory_lib
from attn_jax.config import Config, ModelConfig
from attn_jax.data import batching, pipeline, translation
from attn_jax.decode import searches
from attn_jax.evaluation import held_out
from attn_jax.perf import flops, rss
from attn_jax.train import loop, seeds, steps


def spread(values: list[float]) -> dict[str, float]:
  """{"median", "min", "max"} of a list of measurements."""
  return {"median": float(statistics.median(values)), "min": float(min(values)),
          "max": float(max(values))}


def device_memory_gib() -> float | None:
  """Peak device memory in use (GPU/TPU); None where the backend does not report it (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / 2**30


def matmul_peak(size: int = 1024, repeats: int = 20, dtype: str = "float32") -> float:
  """Matmul FLOP/s of a jitted size^3 product, the best of `repeats` runs: float32, or
  operands in `dtype` accumulated in float32 (as precision.matmul)."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(kb, (size, size), jnp.float32).astype(dtype)
  matmul = jax.jit(functools.partial(jnp.matmul, preferred_element_type=jnp.float32))
  matmul(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    began = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - began)
  return 2.0 * size**3 / best


def _shape_name(shape) -> str:
  return "x".join(map(str, shape)) if isinstance(shape, tuple) else str(shape)


def _compile_summary(compiled: compiling.Compiled) -> dict:
  return {"count": len(compiled.seconds), "seconds": round(sum(compiled.seconds.values()), 2),
          "per_shape": {_shape_name(w): round(s, 2) for w, s in compiled.seconds.items()},
          "temp_mib_per_shape": {_shape_name(w): (round(b / 2**20, 1) if b is not None else None)
                                 for w, b in compiled.temp_bytes.items()}}


def time_training(config: Config, train: pipeline.TrainData, windows: int, window_steps: int,
                  warmup_steps: int, memory: memory_lib.HostMemory = memory_lib.NONE
                  ) -> tuple[dict, steps.TrainState]:
  """Compiles the train step for every width, then times `windows` windows of steps.

  Returns (report, the state after the timed steps). Report: compile summary,
  resident memory after each stage (initialisation, compilation, warm-up, timed
  windows) and, per window and as spread(): target tokens/s, source+target
  tokens/s, sentences/s, useful matmul FLOP/s. With num_seeds N > 1 (`train` stacked, see
  pipeline.load) the N runs train as one program and the figures count all of them.
  """
  optimizer = steps.make_optimizer(config.train)
  k_init, key = seeds.run_keys(config.train)
  state = steps.init_state(k_init, config.model, optimizer)
  jax.block_until_ready(state)
  resident = {"parameters and optimizer state": rss.resident_gib()}
  train_step = steps.make_train_step(config.model, config.train, optimizer)
  # every width of the first epoch, and any a later epoch of the steps run adds (subword_dropout)
  first = {**pipeline.first_batch_per_width(train, 0, warmup_steps + windows * window_steps,
                                          within_epoch=False),
           **pipeline.first_batch_per_width(train, 0)}
  compiled = compiling.compile_per_shape(train_step, {w: (state, b, seeds.step_key(key, 0))
                                                      for w, b in first.items()}, memory)
  resident["train step compiled"] = rss.resident_gib()
  one_in_flight = loop.one_step_in_flight()  # as training runs its steps
  run = functools.partial(_run_steps, compiled, train, config, key, one_in_flight)
  state, step, _ = run(state, 0, warmup_steps)
  jax.block_until_ready(state)
  resident["warm-up steps"] = rss.resident_gib()
  rows = []
  for _ in range(windows):
    began = time.perf_counter()
    state, step, totals = run(state, step, window_steps)
    jax.block_until_ready(state)
    rows.append(_window_row(totals, time.perf_counter() - began))
  resident["timed steps"] = rss.resident_gib()
  report = {"compile": _compile_summary(compiled), "warmup_steps": warmup_steps,
            "window_steps": window_steps, "windows": rows, "resident_gib_by_stage": resident}
  for name in ("target_tokens_per_sec", "tokens_per_sec", "sentences_per_sec", "flops_per_sec"):
    report[name] = spread([r[name] for r in rows])
  report["flops_per_target_token"] = rows[0]["flops_per_target_token"]
  return report, state


def _run_steps(compiled: compiling.Compiled, train: pipeline.TrainData, config: Config,
               key: jax.Array, one_in_flight: bool, state: steps.TrainState, step: int,
               count: int) -> tuple[steps.TrainState, int, dict[str, float]]:
  """`count` training steps from `step`: (state, the next step, totals of target and source
  tokens, sentences and useful matmul FLOPs)."""
  totals = {"tgt": 0.0, "src": 0.0, "sentences": 0.0, "flops": 0.0}
  for _ in range(count):
    batch = train.batch(step)
    if one_in_flight:
      jax.block_until_ready(state)
    state, _ = compiled.by_shape[batch.src.shape[-1]](state, batch, seeds.step_key(key, step))
    real = batch.tgt_len > 0
    totals["tgt"] += float(batch.tgt_len.sum())
    totals["src"] += float(batch.src_len[real].sum())
    totals["sentences"] += float(real.sum())
    totals["flops"] += flops.train(config.model, batch.src_len, batch.tgt_len)
    step += 1
  return state, step, totals


def _window_row(totals: dict[str, float], seconds: float) -> dict[str, float]:
  """A timed window's rates from its totals."""
  return {"seconds": seconds,
          "target_tokens_per_sec": totals["tgt"] / seconds,
          "tokens_per_sec": (totals["tgt"] + totals["src"]) / seconds,
          "sentences_per_sec": totals["sentences"] / seconds,
          "flops_per_sec": totals["flops"] / seconds,
          "flops_per_target_token": totals["flops"] / totals["tgt"]}


def compile_eval_step(config: ModelConfig, params: dict, ev: pipeline.EvalData,
                      memory: memory_lib.HostMemory = memory_lib.NONE) -> dict:
  """Compile summary of the teacher-forced eval step over the widths of `ev`."""
  eval_step = steps.make_eval_step(config)
  by_width = {b.src.shape[1]: b for _, b in ev.batches}
  return _compile_summary(compiling.compile_per_shape(
      eval_step, {w: (params, b) for w, b in by_width.items()}, memory))


def time_decoding(config: ModelConfig, params: dict, ev: pipeline.EvalData, beam_size: int,
                  alpha: float, passes: int = 1, with_weights: bool = False,
                  memory: memory_lib.HostMemory = memory_lib.NONE
                  ) -> tuple[dict, list[held_out.Example]]:
  """Compiles the search for every call shape of `ev`, then decodes all of it `passes`
  times, each timed.

  Returns (report: compile summary, sentences, search seconds and sentences/s of the first
  pass, the spread of sentences/s over all passes, mean output length in tokens (EOS
  included); the outputs). with_weights keeps the attention weights, as translate does
  for --attention_plots.
  """
  search = searches.make_search(config, beam_size, alpha, with_weights=with_weights,
                             slots=ev.batch_size)  # as translate and evaluate
  run, compiled = held_out.compile_ahead(search, params, ev, memory=memory)
  seconds = []
  for _ in range(passes):
    began = time.perf_counter()
    outputs = held_out.decode(params, ev, run)
    seconds.append(time.perf_counter() - began)
  report = {"compile": _compile_summary(compiled), "sentences": ev.size,
            "search_seconds": seconds[0], "sentences_per_sec": ev.size / seconds[0],
            "passes": spread([ev.size / s for s in seconds]),
            "mean_output_len": float(np.mean([len(o.output) for o in outputs]))}
  return report, outputs


def synthetic_pairs(count: int, mean_len: float, vocab_size: int, max_len: int, seed: int
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Random token-id pairs with right-skewed lengths, as in Multi30k, within max_len.

  Source lengths ~ Gamma(shape 6, mean `mean_len`), clipped to [1, max_len];
  targets are 1.1 times as long (clipped the same way).
  """
  rng = np.random.default_rng(seed)
  src_lens = np.clip(np.round(rng.gamma(6.0, mean_len / 6.0, count)), 1, max_len).astype(int)
  tgt_lens = np.clip(np.round(1.1 * src_lens), 1, max_len).astype(int)
  low = config_lib.NUM_SPECIAL
  src = [rng.integers(low, vocab_size, n).astype(np.int32) for n in src_lens]
  tgt = [rng.integers(low, vocab_size, n).astype(np.int32) for n in tgt_lens]
  return src, tgt


def synthetic_data(count: int, mean_len: float, vocab_size: int, max_len: int,
                   batch_size: int, seed: int = 0,
                   num_seeds: int = 1) -> tuple[pipeline.TrainData, pipeline.EvalData]:
  """Training stream (of num_seeds runs, stacked, if > 1) and an evaluation set of
  synthetic_pairs in the usual length buckets."""
  widths = pipeline.bucket_widths(max_len)
  buckets = batching.bucket_pairs(*synthetic_pairs(count, mean_len, vocab_size, max_len, seed),
                                  widths)
  train = pipeline.stacked(functools.partial(pipeline.bucketed_train, buckets, batch_size, seed),
                         seeds.shuffle_seeds(config_lib.DataConfig(seed=seed), num_seeds))
  eval_buckets = batching.bucket_pairs(
      *synthetic_pairs(max(1, count // 29), mean_len, vocab_size, max_len, seed + 1), widths)
  return train, pipeline.eval_data(translation.Split(eval_buckets, None), batch_size)
