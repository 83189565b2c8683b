"""Significance and spread over seeds: Student-t intervals and paired bootstrap tests."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

BOOTSTRAP_SAMPLES = 1000


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
  """(mean, half-width of its Student-t confidence interval); the half-width is NaN for one
  value."""
  values = np.asarray(values, np.float64)
  n = len(values)
  if n < 2:
    return float(values.mean()), float("nan")
  t = scipy.stats.t.ppf(0.5 + confidence / 2, df=n - 1)
  return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(n))


def paired_bootstrap(task: str, baseline: list, system: list, references: list[str],
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 12345) -> float:
  """p-value of the system's difference from the baseline on resampled test sets.

  Translation: sacreBLEU's paired bootstrap resampling (Koehn 2004) of tokenised
  lowercased BLEU. Synthetic: the same test on exact-sequence accuracy: the share
  of resampled differences at least as far from their mean as the observed one.
  """
  if task == "translation":
    # sacreBLEU seeds its resampling from $SACREBLEU_SEED, 12345 when unset.
    test = PairedTest([("baseline", baseline), ("system", system)],
                      {"bleu": BLEU(lowercase=True, tokenize="13a")}, [references],
                      test_type="bs", n_samples=samples)
    _, results = test()
    return float(results["BLEU"][1].p_value)
  diff = np.asarray(system, np.float64) - np.asarray(baseline, np.float64)
  rng = np.random.default_rng(seed)
  resampled = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
  extreme = np.abs(resampled - resampled.mean()) >= abs(diff.mean())
  return float((extreme.sum() + 1) / (samples + 1))
