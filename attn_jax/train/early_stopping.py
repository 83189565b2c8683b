"""Early stopping and the learning-rate plateau: the validation score a run is judged by,
and its record of the best score so far."""

from __future__ import annotations

from typing import NamedTuple

from attn_jax.config import Config

SCORES = {"translation": "bleu_tok_lc"}  # task -> the validation score; higher is better
DEFAULT_SCORE = "sequence_accuracy"


def score_name(config: Config) -> str:
  """The validation metric that early stopping, the plateau and best checkpoints use."""
  return SCORES.get(config.data.task, DEFAULT_SCORE)


class Patience(NamedTuple):
  """Early-stopping record, saved in checkpoint metadata so a resumed run keeps it."""
  best: float | None  # best validation score so far
  best_step: int | None
  waited: int  # scored evaluations since the best

  def update(self, score: float | None, step: int) -> "Patience":
    if score is None:
      return self
    if self.best is None or score > self.best:
      return Patience(score, step, 0)
    return self._replace(waited=self.waited + 1)


NONE_YET = Patience(best=None, best_step=None, waited=0)  # before the first evaluation


def on_plateau(patience: Patience, score: float | None, plateau_patience: int) -> bool:
  """Whether the evaluation just recorded in `patience` (scoring `score`) lowers the
  learning rate: every `plateau_patience`-th scored evaluation without a new best."""
  return (score is not None and plateau_patience > 0 and patience.waited > 0
          and patience.waited % plateau_patience == 0)
