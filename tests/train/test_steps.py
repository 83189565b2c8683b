"""Jitted steps: bitwise determinism, no retracing, evaluation sums, learning."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.config import TrainConfig
from attn_jax.data import dataset, tasks
from attn_jax.decode import greedy_search, searches
from attn_jax.evaluation import metrics
from attn_jax.model import seq2seq
from attn_jax.train import steps

CONFIG = helpers.tiny_config(data_overrides=dict(task="copy"))


@functools.lru_cache(maxsize=None)
def _init_fn(model_config, train_config):
  opt = steps.make_optimizer(train_config)
  return jax.jit(lambda key: steps.init_state(key, model_config, opt)), opt


@pytest.fixture(scope="module")
def datasets():
  return tasks.make_datasets(CONFIG.data)


def _train(n_steps, datasets, seed=0, config=CONFIG):
  init, opt = _init_fn(config.model, config.train)
  state = init(jax.random.key(seed))
  train_step = steps.make_train_step(config.model, config.train, opt)
  losses = []
  for s in range(n_steps):
    batch = dataset.train_batch(datasets[0], s, config.train.batch_size, config.data.seed)
    state, sums = train_step(state, batch, jax.random.fold_in(jax.random.key(seed), s))
    losses.append(float(sums["loss_sum"]) / float(sums["token_count"]))
  return jax.device_get(state), losses, train_step


def test_same_seed_same_params_and_losses_bitwise(datasets):
  init, _ = _init_fn(CONFIG.model, CONFIG.train)
  assert helpers.tree_equal(init(jax.random.key(0)), init(jax.random.key(0)))
  assert not helpers.tree_equal(init(jax.random.key(0)).params, init(jax.random.key(1)).params)
  a, losses_a, _ = _train(3, datasets)
  b, losses_b, _ = _train(3, datasets)  # a separately built (and traced) train_step
  assert losses_a == losses_b
  assert helpers.tree_equal(a, b)
  assert int(a.step) == 3


def test_train_step_does_not_retrace(datasets, monkeypatch):
  traces = []
  original = steps._loss  # pylint: disable=protected-access

  def counting_loss(*args, **kwargs):
    traces.append(1)  # runs at trace time only
    return original(*args, **kwargs)

  monkeypatch.setattr(steps, "_loss", counting_loss)
  _, _, train_step = _train(4, datasets)
  assert len(traces) == 1
  assert train_step._cache_size() == 1  # pylint: disable=protected-access


def test_dropout_key_changes_the_update_only_with_dropout(datasets):
  config = helpers.tiny_config(model_overrides=dict(dropout=0.3), data_overrides=dict(task="copy"))
  init, opt = _init_fn(config.model, config.train)
  train_step = steps.make_train_step(config.model, config.train, opt)
  batch = dataset.train_batch(datasets[0], 0, config.train.batch_size, 0)
  _, s1 = train_step(init(jax.random.key(0)), batch, jax.random.key(1))
  _, s2 = train_step(init(jax.random.key(0)), batch, jax.random.key(2))
  _, s3 = train_step(init(jax.random.key(0)), batch, jax.random.key(1))
  assert float(s1["loss_sum"]) != float(s2["loss_sum"])
  assert float(s1["loss_sum"]) == float(s3["loss_sum"])


def test_eval_step_sums_and_filler_rows(datasets):
  init, _ = _init_fn(CONFIG.model, CONFIG.train)
  params = init(jax.random.key(0)).params
  eval_step = steps.make_eval_step(CONFIG.model)
  ds = datasets[1]
  batch = dataset.take(ds, np.arange(8))
  filler = batch._replace(tgt_len=np.where(np.arange(8) < 5, batch.tgt_len, 0))
  other_filler = dataset.take(ds, np.array([0, 1, 2, 3, 4, 9, 10, 11]))
  other_filler = other_filler._replace(tgt_len=np.where(np.arange(8) < 5, other_filler.tgt_len, 0))
  a = jax.device_get(eval_step(params, filler))
  b = jax.device_get(eval_step(params, other_filler))
  assert a == b  # what stands in a filler row changes nothing
  assert int(a["token_count"]) == int(batch.tgt_len[:5].sum())
  # Alignment counts the real rows' symbols: every target position but EOS.
  assert int(a["align_count"]) == int((batch.tgt_len[:5] - 1).sum())
  # The loss sum is the teacher-forced cross-entropy of the real rows.
  from attn_jax.model import seq2seq  # pylint: disable=g-import-not-at-top
  logits, _ = seq2seq.forward(params, filler, CONFIG.model)
  mask = metrics.target_mask(filler.tgt_len, filler.tgt_out.shape[1])
  np.testing.assert_allclose(
      float(a["loss_sum"]), float(metrics.cross_entropy_sum(logits, filler.tgt_out, mask)),
      rtol=1e-5)


def test_make_greedy_is_search_greedy(datasets):
  init, _ = _init_fn(CONFIG.model, CONFIG.train)
  params = init(jax.random.key(0)).params
  batch = dataset.take(datasets[1], np.arange(4))
  got = searches.make_greedy(CONFIG.model, 6)(params, batch.src, batch.src_len)
  ref = jax.jit(lambda p, s, n: greedy_search.greedy(p, s, n, CONFIG.model, 6))(
      params, batch.src, batch.src_len)
  assert helpers.tree_equal(got, ref)


@pytest.mark.parametrize("matmul_dtype", ["float32", "bfloat16"])
def test_training_reduces_the_loss(datasets, matmul_dtype):
  config = helpers.tiny_config(data_overrides=dict(task="copy"),
                               model_overrides=dict(matmul_dtype=matmul_dtype),
                               train_overrides=dict(num_steps=60, cooldown_steps=10))
  _, losses, _ = _train(60, datasets, config=config)
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.95 * np.mean(losses[:5])


def test_optimizer_clips_the_global_norm():
  config = helpers.tiny_config(train_overrides=dict(clip_norm=1.0, warmup_steps=0,
                                                    learning_rate=1.0)).train
  opt = steps.make_optimizer(config)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([300.0, 400.0, 0.0])}
  # clip_by_global_norm runs first: the Adam state sees the clipped gradient.
  _, state = opt.update(grads, opt.init(params), params)
  mu = jax.tree.leaves([s for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "mu"))
                        if hasattr(s, "mu")][0].mu)[0]
  np.testing.assert_allclose(np.asarray(mu) / 0.1, [0.6, 0.8, 0.0], rtol=1e-5)


def test_plateau_scale_multiplies_the_updates_and_lower_rate_lowers_it():
  tc = TrainConfig(learning_rate=0.1, warmup_steps=0, plateau_patience=2, plateau_factor=0.25)
  plain = steps.make_optimizer(dataclasses.replace(tc, plateau_patience=0))
  opt = steps.make_optimizer(tc)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([0.3, -0.4, 0.0])}
  state = steps.TrainState(jnp.zeros((), jnp.int32), params, opt.init(params))
  assert steps.rate_scale(state) == 1.0
  reference, _ = plain.update(grads, plain.init(params), params)
  updates, _ = opt.update(grads, state.opt_state, params)
  np.testing.assert_array_equal(updates["w"], reference["w"])
  lowered = steps.lower_rate(steps.lower_rate(state, 0.25), 0.25)
  assert steps.rate_scale(lowered) == 0.0625
  updates, _ = opt.update(grads, lowered.opt_state, params)
  np.testing.assert_allclose(updates["w"], 0.0625 * np.asarray(reference["w"]), rtol=1e-6)
  no_plateau = state._replace(opt_state=plain.init(params))
  assert steps.rate_scale(no_plateau) == 1.0
  with pytest.raises(ValueError, match="plateau_patience"):
    steps.lower_rate(no_plateau, 0.5)


def test_learning_rate_schedule():
  """Linear warm-up to the peak, 1/sqrt decay after it, linear cool-down to 0 at num_steps."""
  tc = TrainConfig(num_steps=1000, learning_rate=1.0, warmup_steps=100, cooldown_steps=200)
  lr = steps.learning_rate(tc)
  at = lambda count: float(lr(count))
  np.testing.assert_allclose(at(49), 0.5, rtol=1e-6)  # step 50 of 100 warm-up steps
  np.testing.assert_allclose(at(99), 1.0, rtol=1e-6)
  np.testing.assert_allclose(at(399), 0.5, rtol=1e-6)  # sqrt(100 / 400)
  np.testing.assert_allclose(at(900), np.sqrt(100 / 901) * 0.5, rtol=1e-6)  # half-way down
  assert at(1000) == 0.0


@pytest.mark.parametrize("overrides", [
    dict(tie_embeddings=True, embed_size=16, hidden_size=16, layer_norm=True),
    dict(cell="lstm", attention="general", input_feeding=False)])
def test_bfloat16_matmuls_give_float32_gradients_close_to_float32s(overrides):
  full = helpers.tiny_model(**overrides)
  low = dataclasses.replace(full, matmul_dtype="bfloat16")
  params = seq2seq.init(jax.random.key(0), full)
  batch = helpers.random_batch(np.random.default_rng(0), [3, 5, 2], [4, 2, 6], 6, 7)
  loss = lambda p, config: steps._loss(p, batch, config, 0.1, None, 4)[0]  # pylint: disable=protected-access
  (loss_full, grad_full), (loss_low, grad_low) = (
      jax.value_and_grad(loss)(params, config) for config in (full, low))
  np.testing.assert_allclose(loss_low, loss_full, rtol=2e-3)
  for g_low, g_full in zip(jax.tree.leaves(grad_low), jax.tree.leaves(grad_full)):
    assert g_low.dtype == np.float32
    assert np.linalg.norm(g_low - g_full) <= 0.05 * np.linalg.norm(g_full) + 1e-6


@pytest.mark.parametrize("overrides", [
    dict(dropout=0.3, layer_norm=True),
    pytest.param(dict(cell="lstm", attention="general", query="previous", encoder_layers=2),
                 marks=pytest.mark.long)])
def test_recomputed_time_steps_give_the_same_loss_and_gradients(overrides):
  """remat_width: batches that wide recompute the scans' steps in the backward pass."""
  config = helpers.tiny_model(**overrides)
  params = seq2seq.init(jax.random.key(0), config)
  batch = helpers.random_batch(np.random.default_rng(0), [3, 5, 2], [4, 2, 6], 6, 7)
  loss = functools.partial(steps._loss, batch=batch, config=config, label_smoothing=0.1,  # pylint: disable=protected-access
                           dropout_key=jax.random.key(3), chunk_rows=4)
  grad_fn = lambda width: jax.jit(jax.grad(lambda p: loss(p, remat_width=width)[0]))(params)
  kept, recomputed = grad_fn(0), grad_fn(7)  # 7: the batch's width (6 source, 7 target)
  assert grad_fn(8) is not None  # wider than the batch: nothing recomputed
  for g_kept, g_recomputed in zip(jax.tree.leaves(kept), jax.tree.leaves(recomputed)):
    np.testing.assert_allclose(g_recomputed, g_kept, rtol=1e-5, atol=1e-7)
  checkpoints = lambda width: str(jax.make_jaxpr(lambda p: loss(p, remat_width=width))(
      params)).count("remat")  # additive attention has one of its own
  assert checkpoints(7) > checkpoints(8) == checkpoints(0)


def test_coverage_loss_adds_its_weight_times_the_overlap_per_token(datasets):
  """objective = (cross-entropy sum + lambda sum_t sum_j min(a_tj, cov_tj)) / tokens (See et
  al. 2017, eq. 13); the reported loss stays the cross-entropy."""
  model = dataclasses.replace(CONFIG.model, attention="coverage_additive")
  params = helpers.init_params(model)
  batch = jax.tree.map(jnp.asarray, dataset.take(datasets[1], np.arange(8)))
  plain, (loss_sum, count, _, weights, mask) = steps._loss(  # pylint: disable=protected-access
      params, batch, model, 0.0, None, 0)
  weighted, (loss_sum2, *_) = steps._loss(  # pylint: disable=protected-access
      params, batch, model, 0.0, None, 0, coverage_weight=0.5)
  overlap = float(jnp.sum(jnp.where(mask, metrics.coverage_overlap(weights), 0.0)))
  assert overlap > 0 and float(loss_sum2) == float(loss_sum)
  np.testing.assert_allclose(float(weighted), float(plain) + 0.5 * overlap / float(count),
                             rtol=1e-5)


def test_monotonic_noise_enters_training_only(datasets):
  """Pre-sigmoid noise (Raffel et al. sec. 2.5) is drawn from the dropout key: training
  steps with different keys differ, and evaluation (no key) is deterministic."""
  config = dataclasses.replace(CONFIG, model=dataclasses.replace(CONFIG.model,
                                                                 attention="monotonic"))
  init, opt = _init_fn(config.model, config.train)
  train_step = steps.make_train_step(config.model, config.train, opt)
  batch = dataset.train_batch(datasets[0], 0, config.train.batch_size, 0)
  _, s1 = train_step(init(jax.random.key(0)), batch, jax.random.key(1))
  _, s2 = train_step(init(jax.random.key(0)), batch, jax.random.key(2))
  assert float(s1["loss_sum"]) != float(s2["loss_sum"])
  eval_step = steps.make_eval_step(config.model)
  params = init(jax.random.key(0)).params
  assert jax.device_get(eval_step(params, batch)) == jax.device_get(eval_step(params, batch))
