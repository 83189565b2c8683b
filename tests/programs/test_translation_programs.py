"""experiments.translate and experiments.evaluate as subprocesses, on a tiny trained model."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

import conftest
import helpers
from attn_jax.decode import searches
from attn_jax.train import inference, loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A translation workdir trained for 4 steps (BLEU at steps 2 and 4, so a best exists)."""
  return helpers.trained_translation(tmp_path_factory.mktemp("programs"))


def test_translate_writes_one_line_per_input_line(trained, tmp_path):
  source = tmp_path / "in.en"
  source.write_bytes("the red cat\n\n  \na big dog sits on the bird\ncat\n".encode())
  output = tmp_path / "out.de"
  plots = tmp_path / "plots"
  proc = conftest.run_program(
      "translate", f"--workdir={trained['workdir']}", f"--input={source}",
      f"--output={output}", "--beam_size=3", "--batch_size=2",
      f"--attention_plots={plots}", "--num_plots=2", f"--timings={tmp_path / 't.json'}")
  assert proc.returncode == 0, proc.stderr
  lines = output.read_text(encoding="utf-8").split("\n")
  assert lines[-1] == "" and len(lines) - 1 == 5
  assert lines[1] == "" and lines[2] == ""  # blank inputs give empty outputs
  assert sorted(os.listdir(plots)) == ["attention_line1.png", "attention_line4.png"]
  stages = json.loads((tmp_path / "t.json").read_text())
  assert list(stages) == ["start_up", "read_input", "load_model", "tokenise", "compile",
                          "compilations", "loaded", "search", "write_output", "plots", "total",
                          "peak_rss_gib"]
  # 3 sentences of 2 widths at most, in batches of 2: one compilation per call shape.
  assert 1 <= stages["compilations"] <= 2
  seconds = {k: v for k, v in stages.items()
             if k not in ("compilations", "loaded", "total", "peak_rss_gib")}
  assert min(seconds.values()) >= 0 and stages["compile"] > 0 and stages["search"] > 0
  np.testing.assert_allclose(stages["total"], sum(seconds.values()))


def test_stored_searches_load_with_byte_identical_outputs(trained, tmp_path):
  """A second translate loads the searches the first compiled (W/compiled/), a damaged entry
  is a warning and a compilation, --noreuse_compiled neither reads nor writes the store;
  the output is the same bytes every time."""
  source = tmp_path / "in.en"
  source.write_text("the red cat\na big dog sits on the bird\ncat\n" * 5, encoding="utf-8")
  store = os.path.join(trained["workdir"], "compiled")

  def translate(name, *flags):
    out, timings = tmp_path / f"{name}.de", tmp_path / f"{name}.json"
    proc = conftest.run_program(
        "translate", f"--workdir={trained['workdir']}", f"--input={source}", f"--output={out}",
        "--beam_size=2", "--batch_size=4", "--compilation_cache=none",
        f"--timings={timings}", *flags)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes(), json.loads(timings.read_text()), proc.stderr

  if os.path.isdir(store):
    for name in os.listdir(store):
      os.remove(os.path.join(store, name))
  first, t1, _ = translate("first")
  second, t2, _ = translate("second")
  assert t1["compilations"] >= 1 and t1["loaded"] == 0
  assert t2["compilations"] == 0 and t2["loaded"] == t1["compilations"]
  exe = sorted(n for n in os.listdir(store) if n.endswith(".exe"))[0]
  with open(os.path.join(store, exe), "r+b") as f:
    f.truncate(100)
  third, t3, err = translate("third")
  assert f"warning: {os.path.join(store, exe)}: unreadable (" in err
  assert t3["compilations"] == 1
  files = sorted(os.listdir(store))
  fourth, t4, _ = translate("fourth", "--noreuse_compiled")
  assert t4["loaded"] == 0 and sorted(os.listdir(store)) == files
  assert first == second == third == fourth


@pytest.mark.long
def test_translate_stdin_to_stdout_matches_the_library(trained):
  sentences = ["the red cat", "a big dog sits on the bird", "", "cat runs"]
  proc = conftest.run_program(
      "translate", f"--workdir={trained['workdir']}", "--checkpoint=latest", "--beam_size=1",
      stdin="".join(s + "\n" for s in sentences).encode())
  assert proc.returncode == 0, proc.stderr
  model = inference.load(trained["workdir"], "latest")
  expected = [inference.detokenize(o, model) for o in inference.translate(
      model, sentences, searches.make_search(model.config.model), batch_size=64)]
  assert proc.stdout.split("\n")[:-1] == expected


def test_translate_invalid_utf8_is_one_line(trained, tmp_path):
  source = tmp_path / "bad.en"
  source.write_bytes(b"the cat\nthe \xff dog\n")
  output = tmp_path / "out.de"
  before = conftest.snapshot(trained["workdir"])
  proc = conftest.run_program("translate", f"--workdir={trained['workdir']}",
                              f"--input={source}", f"--output={output}")
  assert conftest.error_line(proc) == (
      f"error: {source}:2: invalid UTF-8 (byte 0xff at column 5)")
  assert not output.exists()
  assert conftest.snapshot(trained["workdir"]) == before


@pytest.mark.parametrize("flags, message", [
    (["--checkpoint=999"], "no checkpoint at step 999 (steps saved: [2, 4])"),
    (["--checkpoint=newest"], "--checkpoint: expected best, latest or a step number, got 'newest'"),
    (["--checkpoint=2", "--average=2"], "--average: "),
])
def test_translate_unknown_checkpoint_is_one_line(trained, flags, message):
  proc = conftest.run_program("translate", f"--workdir={trained['workdir']}", *flags,
                              stdin=b"the cat\n")
  assert message in conftest.error_line(proc)


def test_average_is_the_mean_of_the_latest_checkpoints(trained):
  workdir = trained["workdir"]
  two, four = inference.load(workdir, "2"), inference.load(workdir, "4")
  mean = inference.load(workdir, "latest", average=2)
  assert mean.step == 4 and mean.averaged_steps == (2, 4) and four.averaged_steps == (4,)
  jax.tree.map(lambda m, a, b: np.testing.assert_allclose(m, (a + b) / 2, rtol=1e-6),
               mean.params, two.params, four.params)
  with pytest.raises(inference.ModelLoadError,
                     match=r"--average: .* holds 1 checkpoint\(s\) up to step 2 \(\[2\]\)"):
    inference.load(workdir, "2", average=2)


def test_translate_without_a_trained_workdir_is_one_line(tmp_path):
  proc = conftest.run_program("translate", f"--workdir={tmp_path}", stdin=b"the cat\n")
  assert conftest.error_line(proc) == (
      f"error: {tmp_path / 'checkpoints'}: no such directory (not a training workdir?)")


def test_evaluate_writes_scores_table_and_plot(trained):
  workdir = trained["workdir"]
  proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--split=test",
                              "--beam_size=2")
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(workdir, "eval", "test.json"), encoding="utf-8") as f:
    report = json.load(f)
  assert report["sentences"] == 12 and report["split"] == "test"
  assert report["checkpoint_step"] in (2, 4) and report["beam_size"] == 2
  assert report["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
  assert "case:lc" in report["bleu_tok_lc_signature"]
  assert {"bleu", "bleu_tok_lc", "chrf"} <= set(report)
  assert sum(r["sentences"] for r in report["bleu_by_length"]) == 12
  assert "bleu_tok_lc" in proc.stdout and "wrote" in proc.stdout
  assert os.path.getsize(os.path.join(workdir, "eval", "test_bleu_by_length.png")) > 0
  with open(os.path.join(workdir, "eval", "test.de"), encoding="utf-8") as f:
    assert len(f.read().split("\n")) == 13


def test_evaluate_missing_split_is_one_line(trained):
  before = conftest.snapshot(trained["workdir"])
  proc = conftest.run_program("evaluate", f"--workdir={trained['workdir']}",
                              "--split=test_2017")
  assert conftest.error_line(proc) == (
      f"error: flag --split: test_2017 not in {trained['data_dir']} (present: test, train, val)")
  assert conftest.snapshot(trained["workdir"]) == before


def test_evaluate_all_test_splits_in_one_table(trained, tmp_path):
  data_dir = helpers.write_corpus(tmp_path, splits=("train", "val", "test", "test_2017_flickr"))
  os.remove(tmp_path / "test_2017_flickr.de")
  helpers.write_corpus(tmp_path, splits=("test_2018_flickr",))
  proc = conftest.run_program("evaluate", f"--workdir={trained['workdir']}",
                              f"--data_dir={data_dir}", "--split=all", "--beam_size=1")
  assert proc.returncode == 0, proc.stderr
  assert (f"not in {data_dir} (skipped): test_2016_flickr, test_2017_flickr, "
          f"test_2017_mscoco") in proc.stderr
  eval_dir = os.path.join(trained["workdir"], "eval")
  with open(os.path.join(eval_dir, "all.md"), encoding="utf-8") as f:
    table = f.read()
  rows = [line for line in table.splitlines() if line.startswith("| test")]
  assert [row.split(" | ")[0] for row in rows] == ["| test", "| test_2018_flickr"]
  assert "| 12 |" in rows[0] and "Signatures: BLEU tok-lc `" in table
  with open(os.path.join(eval_dir, "all.json"), encoding="utf-8") as f:
    reports = json.load(f)
  assert [r["split"] for r in reports] == ["test", "test_2018_flickr"]
  with open(os.path.join(eval_dir, "test_2018_flickr.json"), encoding="utf-8") as f:
    assert json.load(f)["bleu"] == reports[1]["bleu"]
  assert table.splitlines()[2] in proc.stdout  # the table is printed too
  listed = conftest.run_program("evaluate", f"--workdir={trained['workdir']}",
                                f"--data_dir={data_dir}", "--split=test,test_2017_flickr")
  assert conftest.error_line(listed) == (
      f"error: flag --split: test_2017_flickr not in {data_dir} (present: test, "
      f"test_2018_flickr, train, val)")


def test_evaluate_line_count_mismatch_is_one_line(trained, tmp_path):
  data_dir = helpers.write_corpus(tmp_path, splits=("val",))
  with open(tmp_path / "val.de", "a", encoding="utf-8") as f:
    f.write("EXTRA LINE\n")
  proc = conftest.run_program("evaluate", f"--workdir={trained['workdir']}",
                              f"--data_dir={data_dir}", "--split=val")
  assert conftest.error_line(proc) == (
      f"error: {tmp_path / 'val.en'} has 12 lines but {tmp_path / 'val.de'} has 13")


@pytest.mark.long
def test_evaluate_ensemble_of_one_model_twice_equals_that_model(trained):
  workdir = trained["workdir"]
  for extra in ([], [f"--ensemble={workdir}"]):
    proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--split=test",
                                "--beam_size=3", "--checkpoint=latest", *extra)
    assert proc.returncode == 0, proc.stderr
  read = lambda name: open(os.path.join(workdir, "eval", name), encoding="utf-8").read()
  assert read("test_ens2.de") == read("test.de")
  single, ens = json.loads(read("test.json")), json.loads(read("test_ens2.json"))
  assert ens["bleu_tok_lc"] == single["bleu_tok_lc"] and single["ensemble"] == []
  assert ens["ensemble"] == [{"workdir": workdir, "step": 4, "seed_index": None}] * 2
  assert "ensemble of 2 models" in proc.stdout


@pytest.mark.long
def test_translate_ensemble_matches_the_library(trained):
  workdir = trained["workdir"]
  sentences = ["the red cat", "a big dog sits on the bird"]
  proc = conftest.run_program("translate", f"--workdir={workdir}", f"--ensemble={workdir}",
                              "--checkpoint=2", "--beam_size=2",
                              stdin="".join(s + "\n" for s in sentences).encode())
  assert proc.returncode == 0, proc.stderr
  ens = inference.load_ensemble([workdir, workdir], "2")
  assert ens.search_config == (ens.config.model,) * 2 and ens.step == 2
  expected = [inference.detokenize(o, ens) for o in inference.translate(
      ens, sentences, searches.make_search(ens.search_config, 2, 0.6), batch_size=64)]
  assert proc.stdout.split("\n")[:-1] == expected


def test_ensemble_with_seed_index_is_one_line(trained):
  proc = conftest.run_program("translate", f"--workdir={trained['workdir']}",
                              f"--ensemble={trained['workdir']}", "--seed_index=0",
                              stdin=b"the cat\n")
  assert conftest.error_line(proc) == (
      "error: --seed_index: not with --ensemble or --ensemble_seeds, which take every model "
      "of each workdir")


def test_ensemble_with_other_vocabularies_is_one_line(trained):
  other = str(trained["root"] / "other_vocab")
  config = helpers.tiny_config(
      data_overrides=dict(task="translation", data_dir=trained["data_dir"], vocab_size=320,
                          max_len=15),
      train_overrides=dict(num_steps=1, eval_every=1, checkpoint_every=1, num_plots=0))
  loop.train_and_evaluate(config, other)
  before = conftest.snapshot(trained["workdir"])
  proc = conftest.run_program("evaluate", f"--workdir={trained['workdir']}",
                              f"--ensemble={other}", "--split=test")
  assert conftest.error_line(proc) == (
      f"error: --ensemble: {other} was trained with other vocabularies than "
      f"{trained['workdir']}")
  assert conftest.snapshot(trained["workdir"]) == before


def test_evaluate_tunes_beam_and_penalty_on_val_then_scores_test_once(trained):
  workdir = trained["workdir"]
  proc = conftest.run_program("evaluate", f"--workdir={workdir}", "--split=test",
                              "--beam_sizes=2", "--length_penalties=0,1.5")
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(workdir, "eval", "test.json"), encoding="utf-8") as f:
    report = json.load(f)
  tuning = report["tuning"]
  assert tuning["split"] == "val"
  assert [(r["beam_size"], r["length_penalty"]) for r in tuning["settings"]] == [
      (2, 0.0), (2, 1.5)]
  best = max(r["bleu_tok_lc"] for r in tuning["settings"])
  assert tuning["chosen"]["bleu_tok_lc"] == best
  assert (report["beam_size"], report["length_penalty"]) == (
      tuning["chosen"]["beam_size"], tuning["chosen"]["length_penalty"])
  assert proc.stdout.count("val: beam") == 2


@pytest.mark.parametrize("flags, message", [
    (["--beam_sizes=5", "--tune_split=test"],
     "flag --tune_split: test is a test split; tune on val"),
    (["--beam_sizes=5", "--tune_split=val", "--split=val"],
     "flag --tune_split: the split tuned on must not be the one scored"),
    (["--beam_sizes=5,x"], "flag --beam_sizes: expected ints, got 5,x"),
    (["--beam_sizes=0"], "flag --beam_sizes: every value must be at least 1"),
])
def test_evaluate_bad_tuning_flags_are_one_line(tmp_path, flags, message):
  # Checked before any model loads: the workdir need not exist.
  proc = conftest.run_program("evaluate", f"--workdir={tmp_path}", "--split=test", *flags)
  assert conftest.error_line(proc) == f"error: {message}"


@pytest.mark.long
def test_benchmark_times_the_search_and_the_whole_program_of_a_trained_workdir(trained,
                                                                             tmp_path):
  out = tmp_path / "bench.json"
  proc = conftest.run_program(
      "benchmark", "--quick", f"--data_dir={trained['data_dir']}", "--vocab_size=300",
      "--max_len=15", "--embed_size=8", "--hidden_size=8", "--attention_size=8",
      "--batch_size=8", f"--decode_workdir={trained['workdir']}", "--decode_batch_size=4",
      "--decode_passes=2", "--decode_weights", f"--json={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "attention weights kept" in proc.stdout and "2 passes: median" in proc.stdout
  r = json.loads(out.read_text())
  assert r["decode_batch_size"] == 4 and r["decode_passes"] == 2 and r["decode_weights"]
  assert r["decoding_model"].startswith(trained["workdir"])
  assert set(r["decoding"]) == {"val/greedy", "val/beam5"}
  for row in r["decoding"].values():
    assert row["sentences"] == 12 and row["sentences_per_sec"] > 0
    assert 0 < row["passes"]["min"] <= row["passes"]["median"] <= row["passes"]["max"]
    assert row["program_seconds"] > 0 and row["program_peak_rss_gib"] > 0
    np.testing.assert_allclose(row["program_sentences_per_sec"], 12 / row["program_seconds"])
    stages = row["program_stages"]  # translate --timings, and the time outside its stages
    assert stages["compilations"] >= 1 and stages["search"] > 0 and stages["other"] >= 0
    np.testing.assert_allclose(stages["total"] + stages["other"], row["program_seconds"])
    assert 0 <= row["bleu_tok_lc"] <= 100
