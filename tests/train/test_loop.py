"""train_and_evaluate: bitwise resumption, run records, incompatible-config refusal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import jax
import pytest

import helpers
from attn_jax.config import Config
from attn_jax.train import checkpoint, loop, resume, steps, writer_lock

pytestmark = pytest.mark.slow

N, K = 6, 3  # full run; where the interrupted run stops (a checkpoint lands there)


def _config(num_steps: int, train_overrides=None, **model_overrides) -> Config:
  return helpers.tiny_config(
      model_overrides=model_overrides,
      train_overrides={**dict(num_steps=num_steps, log_every=1, eval_every=3,
                              checkpoint_every=3, keep_checkpoints=2, num_plots=1),
                       **(train_overrides or {})})


class _Interrupted(Exception):
  pass


def _interrupted_after_checkpoint(step: int):
  """A loop._save that stops the run once the checkpoint of `step` is on disk."""
  save = loop._save  # pylint: disable=protected-access

  def save_then_stop(ckpt, state, done, *args):
    save(ckpt, state, done, *args)
    if done == step:
      ckpt.wait()
      raise _Interrupted()
  return save_then_stop


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """An uninterrupted run (A) and the same run interrupted at K, then rerun (B).

  The same config both times: with a cool-down the schedule depends on num_steps,
  so a shorter run would not be an interruption of the longer one.
  """
  a = str(tmp_path_factory.mktemp("uninterrupted"))
  b = str(tmp_path_factory.mktemp("interrupted"))
  result_a = loop.train_and_evaluate(_config(N), a)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, "_save", _interrupted_after_checkpoint(K))
    with pytest.raises(_Interrupted):
      loop.train_and_evaluate(_config(N), b)
  result_b2 = loop.train_and_evaluate(_config(N), b)
  return {"a": a, "b": b, "result_a": result_a, "result_b2": result_b2}


def _restore(workdir: str, step: int, config: Config | None = None):
  config = config or _config(N)
  opt = steps.make_optimizer(config.train)
  target = jax.eval_shape(
      lambda: steps.init_state(jax.random.key(0), config.model, opt))._asdict()
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.restore(step, target)
  finally:
    ckpt.close()


def _steps(workdir: str) -> list[int]:
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.steps()
  finally:
    ckpt.close()


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _snapshot(workdir: str) -> dict[str, tuple]:
  """Every file under workdir but the writer lock (which each attempt takes and releases):
  (size, mtime, sha256)."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      if name == writer_lock.LOCK_NAME:
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      st = os.stat(path)
      out[os.path.relpath(path, workdir)] = (st.st_size, st.st_mtime_ns, digest)
  return out


def test_resumed_run_equals_uninterrupted_run_bitwise(runs):
  assert _steps(runs["a"]) == _steps(runs["b"]) == [K, N]
  state_a, meta_a = _restore(runs["a"], N)
  state_b, meta_b = _restore(runs["b"], N)
  assert int(state_a["step"]) == N
  assert helpers.tree_equal(state_a, state_b)  # params, Adam moments, step
  assert meta_a == meta_b
  # The checkpoint A wrote at K while training went on equals B's last one before the stop.
  assert helpers.tree_equal(_restore(runs["a"], K)[0], _restore(runs["b"], K)[0])


def test_resumed_metrics_read_as_one_run(runs):
  rec_a, rec_b = _records(runs["a"]), _records(runs["b"])
  key = lambda r: (r["step"], r["split"])
  assert [key(r) for r in rec_a] == [key(r) for r in rec_b]
  assert [key(r) for r in rec_a if r["split"] == "train"] == [(s, "train") for s in range(1, N + 1)]
  assert [key(r) for r in rec_a if r["split"] == "eval"] == [(K, "eval"), (N, "eval")]
  timing = {"wall_time", "tokens_per_sec"}
  for ra, rb in zip(rec_a, rec_b):
    assert {k: v for k, v in ra.items() if k not in timing} == \
        {k: v for k, v in rb.items() if k not in timing}
  last_eval = [r for r in rec_a if r["split"] == "eval"][-1]
  assert runs["result_a"] == {k: v for k, v in last_eval.items()
                              if k not in ("step", "split", "wall_time")}
  assert runs["result_b2"] == runs["result_a"]


def test_run_records(runs):
  a = runs["a"]
  for name in ("config.json", "metrics.jsonl", "plots/curves.png", f"plots/attention_{K}.png",
               f"plots/attention_{N}.png"):
    assert os.path.isfile(os.path.join(a, name)), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(a, "tensorboard")))
  with open(os.path.join(a, "config.json"), encoding="utf-8") as f:
    assert Config.from_dict(json.load(f)) == _config(N)
  assert not os.path.exists(os.path.join(a, "flags.txt"))  # no flagfile given
  train = [r for r in _records(a) if r["split"] == "train"]
  for r in train:  # the train step compiled before the first window: all have a rate
    assert {"loss", "token_accuracy", "tokens_per_sec", "grad_norm", "wall_time"} <= set(r)
    assert math.isfinite(r["loss"]) and r["tokens_per_sec"] > 0
  _, meta = _restore(a, N)
  assert Config.from_dict(meta["config"]) == _config(N)
  assert meta["score"] == runs["result_a"]["sequence_accuracy"]
  assert meta["data_position"] == {"epoch": 0, "batch_in_epoch": N}  # 64 rows / 8 per batch
  _, meta_k = _restore(a, K)
  assert meta_k["score"] is not None  # K is an evaluation step too


def test_already_trained_run_only_evaluates(runs, capsys):
  before = _steps(runs["a"])
  result = loop.train_and_evaluate(_config(N), runs["a"])
  assert "already trained to step 6" in capsys.readouterr().out
  assert result == runs["result_a"]
  assert _steps(runs["a"]) == before
  assert len(_records(runs["a"])) == len(_records(runs["b"]))


@pytest.mark.parametrize("change,field", [
    (dict(model=dict(hidden_size=16)), "model.hidden_size"),
    (dict(train=dict(learning_rate=0.1)), "train.learning_rate"),
    (dict(data=dict(task="copy")), "data.task"),
])
def test_incompatible_config_is_refused_and_nothing_is_written(runs, change, field):
  workdir = runs["b"]
  snap = _snapshot(workdir)
  base = _config(N)
  config = Config(
      model=dataclasses.replace(base.model, **change.get("model", {})),
      data=dataclasses.replace(base.data, **change.get("data", {})),
      train=dataclasses.replace(base.train, **change.get("train", {})))
  with pytest.raises(resume.IncompatibleCheckpointError) as info:
    loop.train_and_evaluate(config, workdir)
  message = str(info.value)
  assert field in message and f"step {N}" in message
  assert "\n" not in message
  assert _snapshot(workdir) == snap


def test_plateau_lowers_the_rate_and_an_interrupted_run_resumes_to_the_same_state(tmp_path,
                                                                                  capsys):
  """With an evaluation every step and plateau_patience 1, the rate is halved after each
  evaluation that finds no new best; the scale is in the checkpoints, so a run
  interrupted at K resumes to the uninterrupted one's state bitwise."""
  config = _config(N, train_overrides=dict(eval_every=1, plateau_patience=1,
                                           keep_checkpoints=N))
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  loop.train_and_evaluate(config, a)
  printed = capsys.readouterr().out
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, "_save", _interrupted_after_checkpoint(K))
    with pytest.raises(_Interrupted):
      loop.train_and_evaluate(config, b)
  loop.train_and_evaluate(config, b)
  scores = [r["sequence_accuracy"] for r in _records(a) if r["split"] == "eval"]
  stalled = lambda scores: sum(score <= max(scores[:i]) for i, score in enumerate(scores) if i)
  plateaus = stalled(scores)
  assert plateaus >= 2  # a few steps of a tiny model: its exact-sequence accuracy stalls
  assert printed.count("learning rate scaled by") == plateaus
  decays = [(r["step"], r["lr_scale"]) for r in _records(a) if r["split"] == "plateau"]
  assert [scale for _, scale in decays] == [0.5 ** (k + 1) for k in range(plateaus)]
  assert decays == [(r["step"], r["lr_scale"]) for r in _records(b) if r["split"] == "plateau"]
  state_a, _ = _restore(a, N, config)
  state_b, _ = _restore(b, N, config)
  assert helpers.tree_equal(state_a, state_b)
  assert steps.rate_scale(steps.TrainState(**state_a)) == 0.5 ** plateaus
  assert steps.rate_scale(steps.TrainState(**_restore(a, K, config)[0])) == \
      0.5 ** stalled(scores[:K])
