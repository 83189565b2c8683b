"""--init_from: a run started from another run's parameters, resumed from its own."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import conftest
import helpers
from attn_jax.config import ConfigError
from attn_jax.data import translation
from attn_jax.train import checkpoint, fine_tune, loop

pytestmark = pytest.mark.slow


def _config(**train):
  return helpers.tiny_config(train_overrides={"num_steps": 3, "eval_every": 3,
                                             "checkpoint_every": 3, **train})


def _recorded_start(monkeypatch) -> list:
  """The states fine_tune.start_state gives training from now on, fetched to the host."""
  seen = []
  start_state = fine_tune.start_state

  def recording(*args):
    state, origin = start_state(*args)
    seen.append(jax.device_get(state))
    return state, origin
  monkeypatch.setattr(fine_tune, "start_state", recording)
  return seen


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher"))
  loop.train_and_evaluate(_config(), workdir)
  return workdir


def _metadata(workdir: str, step: int) -> dict:
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    return ckpt.metadata(step)
  finally:
    ckpt.close()


def test_starts_from_the_checkpoint_with_a_fresh_optimizer_and_records_it(teacher, tmp_path,
                                                                         monkeypatch):
  workdir = str(tmp_path / "student")
  started = _recorded_start(monkeypatch)
  loop.train_and_evaluate(_config(init_from=teacher, init_checkpoint="3"), workdir)
  (state,) = started
  assert int(state.step) == 0
  assert helpers.tree_equal(state.params, helpers.saved_params(teacher, 3))
  # Adam's moments and count start at zero, not at the teacher's.
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(state.opt_state))
  saved = _metadata(workdir, 3)
  assert saved["init_from"] == {"workdir": os.path.abspath(teacher), "step": 3}
  assert saved["config"]["train"]["init_from"] == teacher
  # Three steps of its own from there: not the teacher's parameters any more.
  assert not helpers.tree_equal(helpers.saved_params(workdir, 3), state.params)


def test_a_resumed_fine_tuning_run_reads_its_own_checkpoint_not_the_start(teacher, tmp_path):
  workdir = str(tmp_path / "student")
  loop.train_and_evaluate(_config(init_from=teacher), workdir)
  renamed = teacher + ".away"
  os.rename(teacher, renamed)
  try:  # the start is gone; a longer resumed run needs only its own checkpoint
    result = loop.train_and_evaluate(_config(init_from=teacher, num_steps=6), workdir)
  finally:
    os.rename(renamed, teacher)
  assert "sequence_accuracy" in result
  assert _metadata(workdir, 6)["init_from"]["step"] == 3


def test_another_model_is_refused_naming_the_parameter_and_option(teacher, tmp_path):
  config = helpers.tiny_config(model_overrides=dict(hidden_size=12),
                               train_overrides=dict(num_steps=3, init_from=teacher))
  with pytest.raises(ConfigError, match=r"init_from: .*other parameters.*hidden_size \(there "):
    loop.train_and_evaluate(config, str(tmp_path / "student"))
  assert not os.path.exists(tmp_path / "student" / "checkpoints" / "0")


def test_options_without_parameters_may_differ(teacher, tmp_path):
  config = helpers.tiny_config(model_overrides=dict(dropout=0.3),
                               train_overrides=dict(num_steps=3, eval_every=3,
                                                    checkpoint_every=3, init_from=teacher))
  loop.train_and_evaluate(config, str(tmp_path / "student"))
  assert _metadata(str(tmp_path / "student"), 3)["init_from"]["step"] == 3


@pytest.mark.parametrize("train, message", [
    (dict(init_checkpoint="first"), "init_checkpoint: expected best, latest or a step"),
    (dict(init_from="w", num_seeds=2), "init_from: starts one model, not num_seeds=2"),
])
def test_invalid_options(train, message):
  with pytest.raises(ConfigError, match=message):
    helpers.tiny_config(train_overrides=train)


def test_translation_adopts_the_vocabulary_of_the_start(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  config = lambda **train: helpers.tiny_config(  # noqa: E731
      data_overrides=dict(task="translation", data_dir=data_dir, vocab_size=300, max_len=15),
      train_overrides=dict(num_steps=2, eval_every=2, checkpoint_every=2, **train))
  start = str(tmp_path / "start")
  loop.train_and_evaluate(config(), start)
  workdir = str(tmp_path / "student")
  loop.train_and_evaluate(config(init_from=start), workdir)
  name = os.path.basename(translation.vocab_paths(start, "en", "de", True)[0])
  with open(os.path.join(start, name), "rb") as a, open(os.path.join(workdir, name), "rb") as b:
    assert a.read() == b.read()


def test_program_errors_are_one_line(teacher, tmp_path):
  missing = str(tmp_path / "nowhere")
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'a'}", f"--init_from={missing}",
                              "--num_steps=2")
  assert conftest.error_line(proc) == f"error: {missing}/checkpoints: no such directory " \
                                      "(not a training workdir?)"
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'b'}", f"--init_from={teacher}",
                              "--num_steps=2")  # the default model is not the tiny one
  line = conftest.error_line(proc)
  assert line.startswith(f"error: flag --init_from: {teacher} (step 3) has other parameters")
  proc = conftest.run_program("train", f"--workdir={tmp_path / 'c'}", "--init_from=x",
                              "--init_checkpoint=last")
  assert conftest.error_line(proc) == ("error: flag --init_checkpoint: expected best, latest or "
                                       "a step number, got 'last'")
