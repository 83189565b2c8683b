"""Where a training step's time goes: the step cut at its seams, each part timed alone.

Each part is compiled on its own, forward and backward, on the same batches:

* ``encoder``: embeddings and the (bidirectional) scans, and their backward pass
  (the vector-Jacobian product of its states with respect to the encoder params);
* ``decoder``: the teacher-forced recurrence with attention up to the output vectors
  v_t, and its backward pass (to the decoder params and the encoder states);
* ``output``: logits W_o v_t + b_o, log-softmax and the loss, forward and backward
  (output_loss.sums, in chunks of --loss_chunk_rows);
* ``update``: global-norm clipping and Adam over the whole params pytree;
* ``step``: the whole train step as training runs it.

The parts' sum against the whole step shows what compiling them together gains.
Dropout, label smoothing and shapes are those of the config, so each part does
the work it does inside the step.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from attn_jax.config import Config
from attn_jax.data import pipeline
from attn_jax.data.dataset import Batch
from attn_jax.evaluation import metrics
from attn_jax.model import decoder, encoder, output_loss, precision, seq2seq
from attn_jax.train import steps

PARTS = ("encoder", "decoder", "output", "update")


def common_width_batches(train: pipeline.TrainData, count: int, look: int = 200) -> list[Batch]:
  """`count` batches of the width most frequent among the stream's first `look` batches,
  in stream order (one run's stream: num_seeds 1)."""
  stream = [train.batch(s) for s in range(look)]
  widths = [b.src.shape[-1] for b in stream]
  common = max(set(widths), key=widths.count)
  chosen = [b for b in stream if b.src.shape[-1] == common]
  return (chosen * (1 + count // len(chosen)))[:count]


def _part_functions(config: Config, optimizer: optax.GradientTransformation
                    ) -> dict[str, Callable]:
  """name -> jitted fn(params, opt_state, batch, key, enc, outs); each returns arrays to sync."""
  model_config, smoothing = config.model, config.train.label_smoothing
  chunk_rows = config.train.loss_chunk_rows
  # the kernels as seq2seq.in_precision wraps them (the tied output layer: output_loss rounds it)
  lowered = lambda p: precision.in_precision(p, model_config.matmul_dtype,
                                             skip=seq2seq.FLOAT32_SUBTREES)

  def encoder_part(params, opt_state, batch, key, enc, outs):
    k_enc, _ = seq2seq.dropout_keys(key)
    fn = lambda p: encoder.encode(lowered(p), batch.src, batch.src_len, model_config, k_enc)
    out, vjp = jax.vjp(fn, params["encoder"])
    return vjp(jax.tree.map(jnp.ones_like, out))

  def decoder_part(params, opt_state, batch, key, enc, outs):
    _, k_dec = seq2seq.dropout_keys(key)
    fn = lambda p, e: decoder.teacher_forced_outputs(lowered(p), e, batch.tgt_in, model_config,
                                                     k_dec)
    out, vjp = jax.vjp(fn, params["decoder"], enc)
    return vjp(jax.tree.map(jnp.ones_like, out))

  def output_part(params, opt_state, batch, key, enc, outs):
    mask = metrics.target_mask(batch.tgt_len, batch.tgt_out.shape[1])  # [batch, tgt_len]

    def loss(p, v):
      kernel, bias = decoder.output_layer(p)
      return output_loss.sums(kernel, bias, v, batch.tgt_out, mask, smoothing, chunk_rows,
                              model_config.matmul_dtype)[0]
    return jax.grad(loss, argnums=(0, 1))(params["decoder"], outs)

  def update_part(params, opt_state, batch, key, enc, outs):
    updates, new_opt_state = optimizer.update(params, opt_state, params)  # params as grads
    return optax.apply_updates(params, updates), new_opt_state

  functions = {"encoder": encoder_part, "decoder": decoder_part, "output": output_part,
               "update": update_part}
  return {name: jax.jit(fn) for name, fn in functions.items()}


def profile(config: Config, batches: list[Batch], key: jax.Array, repeats: int = 5) -> dict:
  """Milliseconds per step of each part and of the whole train step.

  Args:
    config: the run's config (num_seeds 1).
    batches: batches of one shape, the same for every part.
    key: dropout key; step s uses fold_in(key, s) as training does.
    repeats: timed passes over `batches`; the median pass counts.
  Returns:
    {"width": src width, "steps": len(batches), "ms_per_step": {part: ms, "step": ms,
     "sum of parts": ms}, "compile_seconds": {part: s}}.
  """
  optimizer = steps.make_optimizer(config.train)
  state = steps.init_state(jax.random.key(config.train.seed), config.model, optimizer)
  params, opt_state = state.params, state.opt_state
  encode = jax.jit(lambda p, b, k: encoder.encode(p, b.src, b.src_len, config.model,
                                                   seq2seq.dropout_keys(k)[0]))
  decode = jax.jit(lambda p, e, b, k: decoder.teacher_forced_outputs(
      p, e, b.tgt_in, config.model, seq2seq.dropout_keys(k)[1])[0])
  keys = [jax.random.fold_in(key, s) for s in range(len(batches))]
  encs = [encode(params["encoder"], b, k) for b, k in zip(batches, keys)]
  outs = [decode(params["decoder"], e, b, k) for e, b, k in zip(encs, batches, keys)]
  args = list(zip(batches, keys, encs, outs))

  functions = _part_functions(config, optimizer)
  train_step = steps.make_train_step(config.model, config.train, optimizer)
  compiled, compile_seconds = {}, {}
  for name, fn in functions.items():
    began = time.perf_counter()
    compiled[name] = fn.lower(params, opt_state, *args[0]).compile()
    compile_seconds[name] = time.perf_counter() - began
  began = time.perf_counter()
  step_fn = train_step.lower(state, batches[0], keys[0]).compile()
  compile_seconds["step"] = time.perf_counter() - began

  ms = {name: _time_part(compiled[name], params, opt_state, args, repeats) for name in PARTS}
  ms["sum of parts"] = sum(ms.values())
  ms["step"] = _time_step(step_fn, state, args, repeats)
  return {"width": int(batches[0].src.shape[-1]), "steps": len(batches), "ms_per_step": ms,
          "compile_seconds": compile_seconds}


def _time_part(fn, params: dict, opt_state, args: list, repeats: int) -> float:
  """Milliseconds per call of a part's executable: the median of `repeats` passes over
  `args` after a warm-up pass."""
  jax.block_until_ready([fn(params, opt_state, *a) for a in args])  # warm-up pass
  passes = []
  for _ in range(repeats):
    began = time.perf_counter()
    for a in args:
      result = fn(params, opt_state, *a)
    jax.block_until_ready(result)
    passes.append(time.perf_counter() - began)
  return 1e3 * statistics.median(passes) / len(args)


def _time_step(step_fn, state, args: list, repeats: int) -> float:
  """Milliseconds per whole train step: the median of `repeats` passes after a warm-up pass."""
  passes = []
  for r in range(repeats + 1):
    began = time.perf_counter()
    for batch, k, _, _ in args:
      state, _ = step_fn(state, batch, k)
    jax.block_until_ready(state)
    if r:  # the first pass warms up
      passes.append(time.perf_counter() - began)
  return 1e3 * statistics.median(passes) / len(args)
