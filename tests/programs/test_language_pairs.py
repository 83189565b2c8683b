"""Any language pair the data has, with --src_lang/--tgt_lang alone (no per-pair constant)."""

from __future__ import annotations

import json
import os

import pytest

import conftest
import helpers

pytestmark = pytest.mark.slow


def test_english_to_czech_trains_evaluates_and_translates(tmp_path):
  data_dir = helpers.write_corpus(tmp_path, splits=("train", "val", "test_2016_flickr"))
  for split in ("train", "val", "test_2016_flickr"):  # the German side stands in for Czech
    os.rename(tmp_path / f"{split}.de", tmp_path / f"{split}.cs")
  workdir = tmp_path / "run"
  proc = conftest.run_program(
      "train", f"--workdir={workdir}", "--task=translation", f"--data_dir={data_dir}",
      "--tgt_lang=cs", "--vocab_size=300", "--max_len=15", "--embed_size=8", "--hidden_size=8",
      "--attention_size=8", "--batch_size=8", "--num_steps=2", "--eval_every=2",
      "--num_plots=0")
  assert proc.returncode == 0, proc.stderr
  assert (workdir / "spm.encs.model").is_file()
  assert "translate's search compiled into" in proc.stdout  # greedy and beam 5, every bucket
  proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--split=all",
                              "--checkpoint=latest", "--beam_size=1")
  assert proc.returncode == 0, proc.stderr
  assert (workdir / "eval" / "test_2016_flickr.cs").is_file()
  report = json.loads((workdir / "eval" / "test_2016_flickr.json").read_text(encoding="utf-8"))
  table = json.loads((workdir / "eval" / "all.json").read_text(encoding="utf-8"))
  assert [r["split"] for r in table] == ["test_2016_flickr"] and report["bleu"] == table[0]["bleu"]
  proc = conftest.run_program("translate", f"--workdir={workdir}", "--checkpoint=latest",
                              f"--timings={tmp_path / 't.json'}", stdin=b"the red cat\n")
  assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, proc.stderr
  stages = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
  assert stages["compilations"] == 0 and stages["loaded"] == 1  # compiled by train
