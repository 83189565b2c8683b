"""The jitted step functions: training update and teacher-forced evaluation.

Each is pure and compiled once per batch shape. Metrics leave as sums and
counts; the host divides them (metrics.summarize) and only fetches them at log
steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from attn_jax.config import ModelConfig, TrainConfig
from attn_jax.data.dataset import Batch
from attn_jax.evaluation import metrics
from attn_jax.model import attention, decoder, output_loss, seq2seq


class TrainState(NamedTuple):
  step: jax.Array  # int32 []: updates applied so far
  params: dict  # the model's params pytree
  opt_state: optax.OptState  # Adam moments and count


def learning_rate(config: TrainConfig):
  """Warm-up, inverse-square-root decay, then a linear cool-down to 0 at num_steps.

  lr(s) = peak * min(s / warmup, sqrt(warmup / s)) (Vaswani et al. 2017, eq. 3),
  times min(1, (num_steps - s) / cooldown_steps) so the run ends on a settled model.
  """
  warmup = max(1, config.warmup_steps)
  cooldown = max(1, config.cooldown_steps)

  def schedule(count):
    step = count + 1.0
    rsqrt = jnp.minimum(step / warmup, jnp.sqrt(warmup / step))
    tail = jnp.clip((config.num_steps - count) / cooldown, 0.0, 1.0)
    return config.learning_rate * rsqrt * tail
  return schedule


class PlateauScale(NamedTuple):
  """The state of scale_on_plateau."""
  scale: jax.Array  # float32 []: the plateau factors applied so far, multiplied (1 at first)


def scale_on_plateau() -> optax.GradientTransformation:
  """Multiplies the updates by a scale the host lowers on a validation plateau
  (lower_rate); it lives in the optimizer state, so checkpoints and resumes keep it."""
  def init(params):
    del params
    return PlateauScale(jnp.ones((), jnp.float32))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates), state
  return optax.GradientTransformation(init, update)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Adam with the schedule above and global-norm clipping (Pascanu et al. 2013); with
  plateau_patience, its updates scaled by scale_on_plateau."""
  chain = [optax.adam(learning_rate(config))]
  if config.clip_norm > 0:
    chain.insert(0, optax.clip_by_global_norm(config.clip_norm))
  if config.plateau_patience:
    chain.append(scale_on_plateau())
  return optax.chain(*chain)


def lower_rate(state: TrainState, factor: float) -> TrainState:
  """`state` with the plateau scale of its optimizer (scale_on_plateau) times `factor`."""
  lower = lambda s: s._replace(scale=s.scale * factor) if isinstance(s, PlateauScale) else s
  if not any(isinstance(s, PlateauScale) for s in state.opt_state):
    raise ValueError("the optimizer has no plateau scale (plateau_patience is 0)")
  return state._replace(opt_state=tuple(lower(s) for s in state.opt_state))


def rate_scale(state: TrainState) -> float:
  """The plateau scale of `state`'s optimizer (1.0 without scale_on_plateau)."""
  for s in state.opt_state:
    if isinstance(s, PlateauScale):
      return float(jax.device_get(s.scale))
  return 1.0


@functools.partial(jax.jit, static_argnums=(1, 2))
def init_state(key: jax.Array, config: ModelConfig,
               optimizer: optax.GradientTransformation) -> TrainState:
  """A fresh state from one key [], or the N runs' states stacked from N keys [N]
  (params and opt_state [N, ...], one shared step counter).

  Jitted: one executable instead of one per initialiser operation, each kept by JAX
  for the rest of the process (the same values, less resident memory; figures in
  experiments/results/speed.md).

  N runs are initialised one after the other (`lax.map`), not `vmap`-ed: under vmap the
  orthogonal recurrent kernels become batched QR factorisations, and jaxlib's CPU LAPACK
  kernels (0.10.x: `lapack_sgeqrf_ffi` -> `ParallelBatchMap`) split a batch over XLA's
  intra-op thread pool and block their own pool thread until the pieces are done. When
  the executor runs as many independent batched QRs at once as the pool has threads
  (the default GRU model: nine [N, 128, 128] QRs, on a 2-thread pool), every thread
  waits for work that none is free to run, and the program hangs before its first step.
  An unbatched QR runs inline. Row k is the same as with vmap: the same keys, the same
  per-matrix LAPACK calls.
  """
  def init_run(k):
    params = seq2seq.init(k, config)
    return params, optimizer.init(params)
  params, opt_state = (init_run if key.ndim == 0 else functools.partial(jax.lax.map, init_run)
                       )(key)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


def _loss(params: dict, batch: Batch, config: ModelConfig, label_smoothing: float,
          dropout_key: jax.Array | None, chunk_rows: int, remat_width: int = 0,
          coverage_weight: float = 0.0, heads: bool = False):
  """The objective per target token: cross-entropy, plus coverage_weight times the coverage
  loss sum_j min(a_tj, cov_tj) (See et al. 2017, eq. 13) when it is not 0; and the sums
  (heads: a multi-head variant's weights per head, seq2seq.forward_outputs)."""
  width = max(batch.src.shape[-1], batch.tgt_in.shape[-1])  # static: one compilation per shape
  outs, weights = seq2seq.forward_outputs(params, batch, config, dropout_key,
                                        remat=0 < remat_width <= width, heads=heads)
  mask = metrics.target_mask(batch.tgt_len, batch.tgt_out.shape[1])  # [batch, tgt_len]
  kernel, bias = decoder.output_layer(params["decoder"])  # float32: sums rounds the operands
  loss_sum, hits = output_loss.sums(kernel, bias, outs, batch.tgt_out, mask, label_smoothing,
                                    chunk_rows, config.matmul_dtype)
  count = jnp.sum(mask)
  objective = loss_sum
  if coverage_weight:
    objective = objective + coverage_weight * jnp.sum(
        jnp.where(mask, metrics.coverage_overlap(weights), 0.0))
  return objective / jnp.maximum(count, 1), (loss_sum, count, hits, weights, mask)


def _update(params: dict, opt_state: optax.OptState, batch: Batch, dropout_key: jax.Array,
            model_config: ModelConfig, train_config: TrainConfig,
            optimizer: optax.GradientTransformation):
  """One run's update: (params, opt_state, sums), or the old ones if not finite."""
  grad_fn = jax.value_and_grad(_loss, has_aux=True)
  (_, (loss_sum, count, hits, _, _)), grads = grad_fn(
      params, batch, model_config, train_config.label_smoothing, dropout_key,
      train_config.loss_chunk_rows, train_config.remat_width, train_config.coverage_loss_weight)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(grad_norm) & jnp.isfinite(loss_sum)

  def apply(grads, params, opt_state):
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_opt_state

  # A conditional rather than a select of new or old values: a select needs the old
  # parameters and Adam moments after the new ones are written over their donated
  # buffers, so XLA copies each of them first (a slower step: experiments/results/speed.md).
  # Under vmap (num_seeds > 1) the predicate is batched and it becomes that select.
  new_params, new_opt_state = jax.lax.cond(
      finite, apply, lambda grads, params, opt_state: (params, opt_state),
      grads, params, opt_state)
  ok = lambda x: jnp.where(finite, x, jnp.zeros_like(x))
  sums = {"loss_sum": ok(loss_sum), "token_count": ok(count), "token_hits": ok(hits),
          "grad_norm_sum": ok(grad_norm), "steps": finite.astype(jnp.int32),
          "nonfinite_steps": (~finite).astype(jnp.int32)}
  return new_params, new_opt_state, sums


def make_train_step(model_config: ModelConfig, train_config: TrainConfig,
                    optimizer: optax.GradientTransformation):
  """(state, batch, dropout_key) -> (state, sums); the state's buffers are donated.

  A step whose loss or gradient is not finite applies no update (parameters and
  optimizer state stay as they were), adds nothing to the loss sums and counts
  itself in sums["nonfinite_steps"]; the step counter advances either way.

  With train_config.num_seeds N > 1 the state's params and opt_state, the batch
  and the dropout keys have a leading seed axis [N, ...] (seeds.py), the update is
  jax.vmap-ed over it, and every sum is [N]: run k's, as if it ran alone.
  """
  update = functools.partial(_update, model_config=model_config, train_config=train_config,
                             optimizer=optimizer)
  if train_config.num_seeds > 1:
    update = jax.vmap(update)

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state: TrainState, batch: Batch, dropout_key: jax.Array):
    params, opt_state, sums = update(state.params, state.opt_state, batch, dropout_key)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), sums

  return train_step


def make_eval_step(config: ModelConfig, chunk_rows: int = output_loss.DEFAULT_CHUNK_ROWS):
  """(params, batch) -> sums of loss, token hits, alignment hits and entropy (teacher
  forced), and for a multi-head variant each head's (metrics.head_sums); the loss
  `chunk_rows` positions at a time (output_loss.sums)."""
  heads = attention.VARIANTS[config.attention].heads is not None

  @jax.jit
  def eval_step(params: dict, batch: Batch):
    _, (loss_sum, count, hits, weights, mask) = _loss(params, batch, config, 0.0, None,
                                                      chunk_rows, heads=heads)
    sums = {}
    if heads:  # weights [batch, tgt_len, heads, src_len]
      sums = metrics.head_sums(weights, batch.align, mask)
      weights = jnp.mean(weights, axis=2)  # [batch, tgt_len, src_len]: what attend returns
    return {"loss_sum": loss_sum, "token_count": count, "token_hits": hits,
            **metrics.attention_sums(weights, batch.align, mask, batch.src_len), **sums}

  return eval_step
