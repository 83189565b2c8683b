"""The Orbax wrapper: bitwise round trips and retention (latest N plus the best)."""

from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import pytest

import helpers
from attn_jax.train import checkpoint, steps


@pytest.fixture(scope="module")
def train_state():
  config = helpers.tiny_config()
  opt = steps.make_optimizer(config.train)
  init = jax.jit(lambda k: steps.init_state(k, config.model, opt))
  state = init(jax.random.key(0))
  # Non-trivial optimizer moments and step, as after some training.
  state = state._replace(step=jnp.asarray(17, jnp.int32),
                         opt_state=helpers.randomize(state.opt_state, 3))
  return state, init


def _small_state(value: float):
  return {"step": jnp.asarray(int(value * 10), jnp.int32), "w": jnp.full((3,), float(value), jnp.float32)}


def test_round_trip_is_bitwise(tmp_path, train_state):
  state, init = train_state
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2)
  metadata = {"config": {"a": 1}, "data_position": {"epoch": 0, "batch_in_epoch": 3},
              "seed_key": [0, 42]}
  ckpt.save(17, state._asdict(), metadata, score=0.25)
  ckpt.wait()
  assert ckpt.steps() == [17] and ckpt.latest_step() == 17
  target = jax.eval_shape(init, jax.random.key(0))._asdict()
  restored, meta = ckpt.restore(17, target)
  ckpt.close()
  assert helpers.tree_equal(restored, state._asdict())
  assert jax.tree.structure(restored) == jax.tree.structure(state._asdict())
  assert meta == dict(metadata, score=0.25)
  assert isinstance(restored["params"]["decoder"]["output"]["kernel"], jax.Array)
  steps.TrainState(**restored)  # restores into the code's structure


def test_metadata_alone_and_reopening(tmp_path):
  d = str(tmp_path / "ckpt")
  ckpt = checkpoint.Checkpointer(d, keep=3)
  ckpt.save(1, _small_state(0.1), {"x": 1})
  ckpt.save(2, _small_state(0.2), {"x": 2}, score=0.5)
  ckpt.wait()
  ckpt.close()
  again = checkpoint.Checkpointer(d, keep=3)
  assert again.steps() == [1, 2] and again.latest_step() == 2
  assert again.metadata(1) == {"x": 1, "score": None}
  assert again.metadata(2) == {"x": 2, "score": 0.5}
  restored, _ = again.restore(1, jax.eval_shape(lambda: _small_state(0.0)))
  assert helpers.tree_equal(restored, _small_state(0.1))
  again.close()


def test_empty_directory():
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as d:
    ckpt = checkpoint.Checkpointer(d)
    assert ckpt.steps() == [] and ckpt.latest_step() is None and ckpt.best_step() is None
    ckpt.close()


def test_retention_keeps_latest_n_and_the_best(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2)
  scores = {1: 0.5, 2: 0.9, 3: None, 4: 0.1, 5: None, 6: 0.3}
  for step, score in scores.items():
    ckpt.save(step, _small_state(step), {"step": step}, score)
    ckpt.wait()
    kept = ckpt.steps()
    assert kept[-2:] == [s for s in scores if s <= step][-2:]  # the latest two
    best_so_far = max((sc, s) for s, sc in scores.items() if s <= step and sc is not None)[1]
    assert best_so_far in kept  # never deleted by the rolling policy
    assert ckpt.best_step() == best_so_far
  assert ckpt.steps() == [2, 5, 6]
  restored, meta = ckpt.restore(2, jax.eval_shape(lambda: _small_state(0.0)))
  assert helpers.tree_equal(restored, _small_state(2)) and meta["score"] == 0.9
  # A better score replaces the best; the old best goes.
  ckpt.save(7, _small_state(7), {"step": 7}, 0.95)
  ckpt.wait()
  assert ckpt.steps() == [6, 7] and ckpt.best_step() == 7
  ckpt.close()


def test_best_survives_reopening(tmp_path):
  """A resumed run (a new Checkpointer on the same directory) still keeps the best."""
  d = str(tmp_path / "ckpt")
  ckpt = checkpoint.Checkpointer(d, keep=1)
  ckpt.save(1, _small_state(1), {}, 0.8)
  ckpt.save(2, _small_state(2), {}, 0.2)
  ckpt.wait()
  ckpt.close()
  again = checkpoint.Checkpointer(d, keep=1)
  assert again.steps() == [1, 2]
  again.save(3, _small_state(3), {}, None)
  again.save(4, _small_state(4), {}, 0.1)
  again.wait()
  assert again.steps() == [1, 4]
  assert again.best_step() == 1
  again.close()


def _saved(directory: str, scores: dict[int, float | None]) -> None:
  ckpt = checkpoint.Checkpointer(directory, keep=len(scores))
  for step, score in scores.items():
    ckpt.save(step, _small_state(step / 10), {"x": step}, score=score)
  ckpt.wait()
  ckpt.close()


def test_the_reader_reads_what_the_writer_saved_and_changes_nothing(tmp_path):
  d = str(tmp_path / "ckpt")
  _saved(d, {1: 0.2, 2: None, 3: 0.1})
  before = sorted(os.listdir(d))
  reader = checkpoint.CheckpointReader(d)
  assert reader.steps() == [1, 2, 3]
  assert reader.metadata(2) == {"x": 2, "score": None}
  assert reader.scores() == ({1: 0.2, 2: None, 3: 0.1}, [])
  restored, meta = reader.restore(3, jax.eval_shape(lambda: _small_state(0.0)))
  assert helpers.tree_equal(restored, _small_state(0.3)) and meta["x"] == 3
  reader.close()
  assert sorted(os.listdir(d)) == before


@pytest.mark.parametrize("damage", ["metadata_json", "arrays"])
def test_a_damaged_step_fails_alone_in_the_reader(tmp_path, damage):
  d = str(tmp_path / "ckpt")
  _saved(d, {1: 0.2, 2: 0.3})
  if damage == "metadata_json":
    with open(os.path.join(d, "2", "metadata", "metadata"), "w", encoding="utf-8") as f:
      f.write("{not json")
  else:
    for path in glob.glob(os.path.join(d, "2", "state", "**", "d", "*"), recursive=True):
      with open(path, "wb") as f:
        f.write(b"\0" * 16)
  reader = checkpoint.CheckpointReader(d)
  target = jax.eval_shape(lambda: _small_state(0.0))
  restored, _ = reader.restore(1, target)
  assert helpers.tree_equal(restored, _small_state(0.1))
  with pytest.raises(checkpoint.UnreadableCheckpointError,
                     match=rf"^{d}/2: checkpoint at step 2 is unreadable \("):
    reader.restore(2, target)
  reader.close()


def test_the_writer_sets_aside_a_step_whose_json_is_damaged(tmp_path):
  d = str(tmp_path / "ckpt")
  _saved(d, {1: 0.2, 2: 0.3})
  with open(os.path.join(d, "2", "metrics", "metrics"), "w", encoding="utf-8") as f:
    f.write("")
  ckpt = checkpoint.Checkpointer(d, keep=2)  # Orbax alone would fail to open the directory
  assert ckpt.steps() == [1]
  (aside,) = ckpt.set_aside_at_open
  assert aside.step == 2 and aside.moved_to == os.path.join(d, "2.unreadable")
  assert aside.reason.startswith("metrics/metrics: ")
  ckpt.close()
  assert sorted(os.listdir(d)) == ["1", "2.unreadable"]


def test_a_failed_save_is_one_error_naming_the_directory(tmp_path, monkeypatch):
  d = str(tmp_path / "ckpt")
  ckpt = checkpoint.Checkpointer(d)

  def full_disk(*args, **kwargs):
    raise ValueError("RESOURCE_EXHAUSTED: Error writing \"step/.zarray\": No space left on device")

  monkeypatch.setattr(ckpt._manager, "save", full_disk)  # pylint: disable=protected-access
  with pytest.raises(checkpoint.CheckpointSaveError,
                     match=rf"^{d}: writing checkpoints failed by the save of step 3 "
                           r"\(RESOURCE_EXHAUSTED: .*No space left on device\); the complete"):
    ckpt.save(3, _small_state(0.3), {})
  ckpt.close()


def test_the_reader_restores_the_parameters_alone(tmp_path):
  d = str(tmp_path / "ckpt")
  state = {"params": {"w": jnp.arange(4.0), "b": jnp.ones((2, 3))},
           "opt_state": {"mu": jnp.full((4,), 7.0)}, "step": jnp.asarray(5, jnp.int32)}
  ckpt = checkpoint.Checkpointer(d, keep=2)
  ckpt.save(5, state, {"x": 5}, None)
  ckpt.close()
  reader = checkpoint.CheckpointReader(d)
  params = reader.restore_params(5, jax.eval_shape(lambda: state["params"]))
  assert helpers.tree_equal(params, state["params"]) and set(params) == {"w", "b"}
  reader.close()
