"""The one Orbax wrapper: training state plus JSON metadata, latest N and the best.

Each checkpoint is a composite of two items:

* ``state``: {"step", "params", "opt_state"} as arrays (StandardSave);
* ``metadata``: JSON with the config, the data position, the PRNG seed key and
  the evaluation score the checkpoint was saved with (None between evaluations).

Retention: the latest `keep` checkpoints, plus the one with the best score,
which the rolling policy never deletes.

Resume order (see resume.restore_or_init):
  1. find the latest complete step in the directory;
  2. read its metadata and compare its config with the current one; stop with the
     differing fields if any forbid resuming (nothing is written before this);
  3. build the state's shapes with `jax.eval_shape` of the initialiser and restore
     into them, so the restored tree has the current code's structure;
  4. the step restored fixes the rest: the data position (data.train_batch) and
     the per-step PRNG keys (fold_in(key, step)) are pure functions of it.
With no checkpoint in the directory the run starts at step 0: from the initialiser,
or from another run's parameters (fine_tune.py, TrainConfig.init_from).

Damage. Orbax cannot even open a directory in which one step's small JSON files
(_CHECKPOINT_METADATA, metrics) do not parse, so the writer (Checkpointer) moves
such steps aside to <step>.unreadable when it opens the directory, and reports
them in `set_aside_at_open`. Readers (translate, evaluate) open a directory with
CheckpointReader, which reads one step at a time and never changes the directory:
a damaged step fails alone (UnreadableCheckpointError names it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, NamedTuple

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class _NoMetricWarning(logging.Filter):
  """Drops Orbax's warning for saves without a score: between evaluations that is intended."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_NoMetricWarning())


def _score(metrics: dict[str, float]) -> float:
  return metrics["score"]


class UnreadableCheckpointError(RuntimeError):
  """A checkpoint that cannot be read; the message names its step and directory."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (a full disk, say); the message names the directory."""


class SetAside(NamedTuple):
  step: int
  moved_to: str  # the step directory's new path
  reason: str


def reason(error: BaseException) -> str:
  """The first line of an error, without TensorStore's pointer to further details."""
  text = str(error).splitlines()[0] if str(error) else type(error).__name__
  return text.split(" See full TensorStore details")[0][:200]


def saved_steps(directory: str) -> list[int]:
  """The finished steps in `directory`: Orbax saves under a temporary name and renames
  the directory to the step number once the save is complete."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


_SMALL_JSON = ("_CHECKPOINT_METADATA", os.path.join("metrics", "metrics"),
               os.path.join("metadata", "metadata"))


def _damaged_json(step_dir: str) -> str | None:
  """Why one of a step's small JSON files does not parse, or None if they all do."""
  for name in _SMALL_JSON:
    path = os.path.join(step_dir, name)
    if not os.path.exists(path):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        json.load(f)
    except (OSError, ValueError) as e:
      return f"{name}: {reason(e)}"
  return None


def _set_aside_dir(source: str) -> str:
  """Renames a step directory to <step>.unreadable (or .unreadable2, ...); the new path."""
  target, n = source + ".unreadable", 1
  while os.path.exists(target):
    n += 1
    target = f"{source}.unreadable{n}"
  os.rename(source, target)
  return target


class Checkpointer:
  """Saves and restores training states in `directory` (the run's writer)."""

  def __init__(self, directory: str, keep: int = 2):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
        ]),
        best_fn=_score, best_mode="max",  # makes Orbax store the scores for reopened managers
        create=True)
    self._directory = os.path.abspath(directory)
    self.set_aside_at_open: list[SetAside] = []
    for step in saved_steps(self._directory):
      source = os.path.join(self._directory, str(step))
      damage = _damaged_json(source)
      if damage is None:
        continue
      try:
        self.set_aside_at_open.append(SetAside(step, _set_aside_dir(source), damage))
      except FileNotFoundError:
        pass  # another process of a multi-process run moved it first
    self._manager = ocp.CheckpointManager(
        self._directory, item_names=("state", "metadata"), options=options)

  def save(self, step: int, state: Any, metadata: dict, score: float | None = None) -> None:
    """Saves asynchronously; `score` (higher is better) makes it a candidate for best.
    A failed save (this one, or an earlier one still being written) raises
    CheckpointSaveError; the steps saved before it stay as they are."""
    metadata = dict(metadata, score=score)
    with self._saving(f"the save of step {step}"):
      self._manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  metadata=ocp.args.JsonSave(metadata)),
          metrics=None if score is None else {"score": float(score)})

  @contextlib.contextmanager
  def _saving(self, what: str):
    """Turns the failure of a save (a full disk, an unwritable directory: Orbax raises it
    from its asynchronous writer as any of several types) into one CheckpointSaveError."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointSaveError(f"{self._directory}: writing checkpoints failed by {what} "
                                f"({reason(e)}); the complete ones are kept") from None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The saved step with the highest score; None if no saved step has one."""
    scored = [(m["score"], s) for s in self.steps()
              if (m := self.metadata(s)).get("score") is not None]
    return max(scored)[1] if scored else None

  def metadata(self, step: int) -> dict:
    restored = self._manager.restore(
        step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return dict(restored["metadata"])

  def restore(self, step: int, target: Any) -> tuple[Any, dict]:
    """Restores the state into `target` (a tree of jax.ShapeDtypeStruct) and the metadata."""
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                      metadata=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["metadata"])

  def set_aside(self, step: int) -> str:
    """Renames an unreadable step's directory to <step>.unreadable (nothing is deleted), so
    a resumed run can save that step again; returns the new path."""
    target = _set_aside_dir(os.path.join(self._directory, str(step)))
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk; CheckpointSaveError if one failed."""
    with self._saving("the end of the run"):
      self._manager.wait_until_finished()

  def close(self) -> None:
    with self._saving("the end of the run"):
      self._manager.close()


class CheckpointReader:
  """Reads the checkpoints of `directory` one step at a time, without changing anything
  there (translate, evaluate): a damaged step raises UnreadableCheckpointError alone."""

  def __init__(self, directory: str):
    self._directory = os.path.abspath(directory)
    self._checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())

  def steps(self) -> list[int]:
    return saved_steps(self._directory)

  def _read(self, step: int, args: ocp.args.Composite) -> Any:
    path = os.path.join(self._directory, str(step))
    try:
      return self._checkpointer.restore(path, args=args)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file
      raise UnreadableCheckpointError(
          f"{path}: checkpoint at step {step} is unreadable ({reason(e)})") from None

  def metadata(self, step: int) -> dict:
    return dict(self._read(step, ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"])

  def restore(self, step: int, target: Any) -> tuple[Any, dict]:
    """The state restored into `target` (a tree of jax.ShapeDtypeStruct; None: as saved)
    and the metadata."""
    restored = self._read(step, ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                   metadata=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["metadata"])

  def restore_params(self, step: int, target: Any) -> Any:
    """Only the state's parameters, restored into `target` (the params subtree of the
    state's target): decoding needs neither Adam's moments nor the step, so a reader reads
    a third of the arrays and holds no optimizer state in memory."""
    item = {"params": target}
    restored = self._read(step, ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True)))
    return restored["state"]["params"]

  def scores(self) -> tuple[dict[int, float | None], list[str]]:
    """({step: its validation score or None} over the readable steps, the errors of those
    whose metadata cannot be read)."""
    found, errors = {}, []
    for step in self.steps():
      try:
        found[step] = self.metadata(step).get("score")
      except UnreadableCheckpointError as e:
        errors.append(str(e))
    return found, errors

  def close(self) -> None:
    self._checkpointer.close()
