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
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class _NoMetricWarning(logging.Filter):
  """Drops Orbax's warning for saves without a score: between evaluations that is intended."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_NoMetricWarning())


def _score(metrics: dict[str, float]) -> float:
  return metrics["score"]


class Checkpointer:
  """Saves and restores training states in `directory`."""

  def __init__(self, directory: str, keep: int = 2):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
        ]),
        best_fn=_score, best_mode="max",  # makes Orbax store the scores for reopened managers
        create=True)
    self._directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self._directory, item_names=("state", "metadata"), options=options)

  def save(self, step: int, state: Any, metadata: dict, score: float | None = None) -> None:
    """Saves asynchronously; `score` (higher is better) makes it a candidate for best."""
    metadata = dict(metadata, score=score)
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                metadata=ocp.args.JsonSave(metadata)),
        metrics=None if score is None else {"score": float(score)})

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
    source = os.path.join(self._directory, str(step))
    target, n = source + ".unreadable", 1
    while os.path.exists(target):
      n += 1
      target = f"{source}.unreadable{n}"
    os.rename(source, target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
