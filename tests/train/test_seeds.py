"""--num_seeds: N runs stacked and vmapped equal the N stand-alone runs, resume included."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

import helpers
from attn_jax.config import Config
from attn_jax.data import dataset, pipeline
from attn_jax.train import checkpoint, inference, loop, resume, seeds, steps

pytestmark = pytest.mark.slow

N = 2


def test_reshuffled_runs_have_batches_of_one_shape_and_stack(tmp_path):
  config = helpers.tiny_config(data_overrides=dict(
      task="translation", data_dir=helpers.write_corpus(tmp_path), vocab_size=300, max_len=15))
  run_data = pipeline.load(config.data, 8, str(tmp_path), seeds.shuffle_seeds(config.data, 3))
  runs = [pipeline.load(seeds.member_config(config, k).data, 8, str(tmp_path)) for k in range(3)]
  widths = set()
  for step in range(12):
    alone = [r.train.batch(step) for r in runs]
    stacked = run_data.train.batch(step)
    for k in range(3):
      assert helpers.tree_equal(seeds.member(stacked, k), alone[k])
    widths.add(stacked.src.shape[-1])
    assert not np.array_equal(alone[0].src, alone[1].src)  # reshuffled rows
  assert len(widths) == 2  # both buckets, yet one shape per step


def test_resegmented_runs_stack_at_the_widest_of_their_widths(tmp_path):
  config = helpers.tiny_config(data_overrides=dict(
      task="translation", data_dir=helpers.write_corpus(tmp_path), vocab_size=300, max_len=15,
      subword_dropout=0.5))
  run_data = pipeline.load(config.data, 8, str(tmp_path), seeds.shuffle_seeds(config.data, 2))
  runs = [pipeline.load(seeds.member_config(config, k).data, 8, str(tmp_path)) for k in range(2)]
  widened = 0
  for step in range(24):
    alone = [r.train.batch(step) for r in runs]
    stacked = run_data.train.batch(step)
    width = max(b.src.shape[-1] for b in alone)
    assert stacked.src.shape[-1] == width
    for k in range(2):
      assert helpers.tree_equal(seeds.member(stacked, k), dataset.widen(alone[k], width))
      widened += alone[k].src.shape[-1] < width
  assert widened  # the runs' own widths differed at some steps


def test_member_config_offsets_both_seeds():
  config = helpers.tiny_config(data_overrides=dict(seed=5),
                               train_overrides=dict(seed=3, num_seeds=4))
  assert seeds.member_config(config, 0).data.shuffle_seed is None  # run 0: the flags' run
  member = seeds.member_config(config, 2)
  assert (member.train.seed, member.data.shuffle_seed, member.train.num_seeds) == (5, 7, 1)
  assert member.data.seed == 5  # the data itself is the same for every run
  shuffled = dataclasses.replace(config.data, shuffle_seed=10)
  assert [seeds.shuffle_seed(shuffled, k) for k in range(3)] == [10, 11, 12]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_row_k_of_the_stacked_initial_state_is_seed_ks_own(cell):
  """steps.init_state of N keys (one after another: lax.map) against each key alone."""
  config = helpers.tiny_config(model_overrides=dict(cell=cell),
                               train_overrides=dict(seed=4, num_seeds=3))
  optimizer = steps.make_optimizer(config.train)
  k_init, _ = seeds.run_keys(config.train)
  stacked = steps.init_state(k_init, config.model, optimizer)
  for k in range(3):
    member = seeds.member_config(config, k)
    alone = steps.init_state(seeds.run_keys(member.train)[0], member.model, optimizer)
    assert helpers.tree_equal(seeds.member(stacked.params, k), alone.params)
    assert helpers.tree_equal(seeds.member(stacked.opt_state, k), alone.opt_state)
  assert int(stacked.step) == 0


def _config(**train) -> Config:
  return helpers.tiny_config(
      train_overrides=dict(num_steps=6, log_every=1, eval_every=3, checkpoint_every=3, **train),
      model_overrides=dict(dropout=0.3))


def _final(workdir: str, config: Config) -> dict:
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    state, _ = ckpt.restore(6, resume.abstract_state(config, steps.make_optimizer(config.train)))
  finally:
    ckpt.close()
  return state


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.mark.long
def test_each_vmapped_seed_equals_its_stand_alone_run_through_a_resume(tmp_path):
  config = _config(num_seeds=N)
  stacked_dir = str(tmp_path / "stacked")
  calls = iter(range(100))
  stopped = loop.train_and_evaluate(
      config, stacked_dir, stop_requested=lambda: "SIGTERM" if next(calls) == 1 else None)
  assert stopped["stopped"] == "SIGTERM"  # after step 2: checkpointed, then resumed
  result = loop.train_and_evaluate(config, stacked_dir)
  stacked = _final(stacked_dir, config)
  records = _records(stacked_dir)
  # Run 1 (both seeds offset) alone. Batched matmuls round differently (relative
  # 1e-7 in the gradients), which Adam's normalisation can blow up to a
  # fraction of one update in a parameter whose gradient is near 0; so the
  # parameters agree to 0.1 x learning rate, and the loss of every step closely: a
  # wrong key, initialisation or batch would differ by far more in either.
  k = 1
  alone_config = seeds.member_config(config, k)
  alone_dir = str(tmp_path / "alone")
  alone_result = loop.train_and_evaluate(alone_config, alone_dir)
  alone = _final(alone_dir, alone_config)
  for got, want in zip(jax.tree.leaves(seeds.member(stacked["params"], k)),
                       jax.tree.leaves(alone["params"])):
    np.testing.assert_allclose(got, want, rtol=0, atol=0.1 * config.train.learning_rate)
  alone_losses = [r["loss"] for r in _records(alone_dir) if r["split"] == "train"]
  np.testing.assert_allclose([r[f"loss_seed{k}"] for r in records if r["split"] == "train"],
                             alone_losses, rtol=1e-5)
  evals = [r for r in records if r["split"] == f"eval_seed{k}"]
  assert [r["step"] for r in evals] == [3, 6]
  np.testing.assert_allclose(evals[-1]["loss"], alone_result["loss"], rtol=1e-5)
  assert evals[-1]["sequence_accuracy"] == alone_result["sequence_accuracy"]
  means = [r for r in records if r["split"] == "eval"]
  np.testing.assert_allclose(
      means[-1]["loss"], np.mean([r["loss"] for r in records
                                  if r["split"].startswith("eval_seed") and r["step"] == 6]))
  assert result["loss"] == means[-1]["loss"]
  # The workdir's models load one by one for decoding, each with its own config.
  trained = inference.load(stacked_dir, "latest", seed_index=1, translation_only=False)
  assert trained.seed_index == 1 and trained.config == seeds.member_config(config, 1)
  assert helpers.tree_equal(trained.params, seeds.member(stacked["params"], 1))
  with pytest.raises(inference.ModelLoadError, match="--seed_index"):
    inference.load(stacked_dir, "latest", seed_index=N, translation_only=False)
  # ... or all together as one ensemble (evaluate/translate --ensemble_seeds).
  ensemble = inference.load_ensemble([stacked_dir], "latest", translation_only=False)
  assert [(m.seed_index, m.step) for m in ensemble.members] == [(k, 6) for k in range(N)]
  assert ensemble.member_configs == tuple(seeds.member_config(config, k) for k in range(N))
  for k in range(N):
    assert helpers.tree_equal(ensemble.params[k], seeds.member(stacked["params"], k))
