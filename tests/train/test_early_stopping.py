"""The early-stopping record and when the plateau lowers the learning rate."""

from __future__ import annotations

from attn_jax.config import Config, DataConfig
from attn_jax.train import early_stopping


def test_patience_keeps_the_best_and_counts_evaluations_since():
  p = early_stopping.NONE_YET.update(0.5, 100)
  assert p == early_stopping.Patience(0.5, 100, 0)
  p = p.update(0.4, 200).update(None, 250).update(0.5, 300)  # no new best; None not scored
  assert p == early_stopping.Patience(0.5, 100, 2)
  assert p.update(0.6, 400) == early_stopping.Patience(0.6, 400, 0)


def test_plateau_every_nth_scored_evaluation_without_a_new_best():
  p, lowered = early_stopping.NONE_YET, []
  for step, score in enumerate([0.5, 0.4, 0.4, 0.4, 0.4, 0.7, 0.1, 0.1], start=1):
    p = p.update(score, step)
    lowered.append(early_stopping.on_plateau(p, score, plateau_patience=2))
  assert lowered == [False, False, True, False, True, False, False, True]
  assert not early_stopping.on_plateau(p, None, 2)  # an evaluation without the score
  assert not early_stopping.on_plateau(p.update(0.1, 9), 0.1, 0)  # 0: never


def test_the_score_follows_the_task():
  assert early_stopping.score_name(Config(data=DataConfig(task="reverse"))) == "sequence_accuracy"
  assert early_stopping.score_name(Config(data=DataConfig(task="translation", data_dir="d"))
                                   ) == "bleu_tok_lc"
