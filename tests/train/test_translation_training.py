"""train_and_evaluate on the translation task: a tiny generated corpus end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import conftest
import helpers
from attn_jax.data import translation, vocab
from attn_jax.train import loop, resume

pytestmark = pytest.mark.slow

def _config(data_dir: str, **train):
  return helpers.tiny_config(
      data_overrides=dict(task="translation", data_dir=data_dir, vocab_size=300, max_len=15),
      train_overrides=dict(num_steps=4, eval_every=2, checkpoint_every=2, bleu_every=4, **train))


def test_trains_scores_bleu_and_refuses_another_vocabulary(tmp_path, capsys):
  data_dir = helpers.write_corpus(tmp_path)
  workdir = str(tmp_path / "run")
  result = loop.train_and_evaluate(_config(data_dir), workdir)
  compiles = [l for l in capsys.readouterr().out.splitlines() if "train step compiled" in l]
  assert len(compiles) == 1, compiles  # every width of the run's steps, before the first
  assert {"loss", "perplexity", "bleu", "bleu_tok_lc", "chrf"} <= set(result)
  assert "alignment_accuracy" not in result  # no gold alignments in real text
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
  assert [("bleu" in r) for r in evals] == [False, True]  # BLEU only every bleu_every steps
  # Another vocabulary file in the workdir: its record no longer matches it.
  path = translation.vocab_paths(workdir, "en", "de", True)[0]
  other = vocab.train([w.upper() for w in helpers.CORPUS_WORDS] + helpers.CORPUS_WORDS, 300)
  with open(path, "wb") as f:
    f.write(other)
  with pytest.raises(vocab.VocabMismatchError, match="the file has changed since"):
    loop.train_and_evaluate(_config(data_dir, patience=1), workdir)
  # Without the record (a workdir of an earlier version), the checkpoints refuse it.
  os.remove(vocab.record_path(path))
  with pytest.raises(resume.IncompatibleCheckpointError, match="another vocabulary"):
    loop.train_and_evaluate(_config(data_dir, patience=1), workdir)


def test_unknown_language_is_one_line(tmp_path):
  data_dir = helpers.write_corpus(tmp_path)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path / 'run'}",
       "--task=translation", f"--data_dir={data_dir}", "--tgt_lang=xx", "--vocab_size=300"],
      cwd=conftest.ROOT, env=conftest.subprocess_env(), capture_output=True, text=True,
      timeout=240, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"error: flag --tgt_lang: no train.xx[.gz] in {data_dir} (languages there: de, en)"]


@pytest.mark.long
def test_a_subword_dropout_run_resumed_in_a_new_process_equals_an_uninterrupted_one(tmp_path):
  """BPE-dropout's samples are a function of (seed, epoch) in any process, so a run stopped
  in its second epoch (64 pairs in batches of 8: at most 11 batches an epoch) and rerun
  ends bitwise equal to one that was not stopped."""
  data_dir = helpers.write_corpus(tmp_path)
  flags = [f"--data_dir={data_dir}", "--task=translation", "--vocab_size=300", "--max_len=15",
           "--subword_dropout=0.3", "--embed_size=8", "--hidden_size=8", "--attention_size=8",
           "--batch_size=8", "--warmup_steps=2", "--cooldown_steps=0", "--log_every=1",
           "--eval_every=100", "--checkpoint_every=12", "--num_plots=0"]
  whole, stopped = tmp_path / "whole", tmp_path / "stopped"
  for workdir, num_steps in ((whole, 20), (stopped, 12), (stopped, 20)):
    proc = conftest.run_program("train", f"--workdir={workdir}", f"--num_steps={num_steps}",
                                *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
  jax.tree.map(np.testing.assert_array_equal, helpers.saved_params(stopped, 20),
               helpers.saved_params(whole, 20))
