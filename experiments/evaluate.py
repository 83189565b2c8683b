r"""Scores a trained translation model on one or more splits of a parallel corpus.

  python -m experiments.evaluate --workdir=runs/multi30k_en_de \
      --split=test_2016_flickr|all|SPLIT1,SPLIT2 [--beam_size=5] \
      [--length_penalty=0.6] [--checkpoint=best] [--ensemble=W2,...] \
      [--beam_sizes=5,10 --length_penalties=0.6,1.0,1.5 --tune_split=val]

Prints and writes W/eval/<split>.json: sacreBLEU (cased, 13a) with its signature,
tokenised lowercased BLEU (the Multi30k papers' protocol), chrF, BLEU per
source-length bucket (also drawn in W/eval/<split>_bleu_by_length.png), timings;
the detokenised outputs go to W/eval/<split>.<tgt_lang>, one line per sentence.
In a workdir trained with --num_seeds, --seed_index=k picks a model and the
files are named <split>_seed<k>.*; with --average=N (the mean parameters of the
N latest checkpoints up to --checkpoint) they end in _avg<N>. With --ensemble=W2,...
the M models of --workdir and the listed workdirs decode as one ensemble
(attn_jax/decode/ensemble.py) and the files, in --workdir, are named <split>_ens<M>.*.
With --beam_sizes=5,10 [--length_penalties=0.6,1.0,1.5] every setting is first
scored on --tune_split (val), and --split is decoded with the best of them only;
the report then holds the whole sweep under "tuning".

--split takes a comma-separated list, or `all`: every test split of the data
directory that has files in both languages (the Multi30k test sets it lacks are
listed and skipped; a split named but absent is an error). Each split gets its
files as above, and the splits together one table, a row per split (sentences,
tok-lc BLEU, sacreBLEU, chrF, with the signatures), printed and written to
W/eval/all.md and .json (for a list: <split1>+<split2>+....md and .json).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Callable

from absl import app, flags

from attn_jax import atomic_write, config as config_lib
from attn_jax.data import corpus, multi30k, pipeline, translation
from attn_jax.decode import searches
from attn_jax.evaluation import bleu, held_out, plots
from attn_jax.train import inference
from experiments import cli

FLAGS = flags.FLAGS

cli.define_decoding_flags()
flags.DEFINE_string("data_dir", "",
                    "Directory of <split>.<lang>[.gz] files; default: the one trained on.")
flags.DEFINE_list("split", ["test_2016_flickr"],
                  "Split(s) to score: a name, a comma-separated list, or 'all' (every test split "
                  "present in the data directory: test_*.<src>/<tgt>). Never tune on a test split.")
flags.DEFINE_list("beam_sizes", [],
                  "If given: first decode --tune_split with every beam size of this list and "
                  "length penalty of --length_penalties, then score --split with the setting "
                  "of the best tok-lc BLEU there (instead of --beam_size/--length_penalty).")
flags.DEFINE_list("length_penalties", ["0.6", "1.0", "1.5"],
                  "Length penalties tried with --beam_sizes.")
flags.DEFINE_string("tune_split", "val", "Split that --beam_sizes tunes on (not a test split).")


def load_eval(trained: inference.Trained, data_dir: str, split_name: str) -> pipeline.EvalData:
  """`split_name` in the model's subwords and length buckets, batched for decoding."""
  d = trained.config.data
  split = translation.load_split(data_dir, split_name, d.src_lang, d.tgt_lang, trained.vocabs,
                                 pipeline.bucket_widths(d.max_len))
  return pipeline.eval_data(split, FLAGS.batch_size)


def evaluate(trained: inference.Trained, data_dir: str, split_name: str, beam_size: int,
             alpha: float, ev: pipeline.EvalData | None = None,
             progress: Callable[[], None] = held_out.no_progress) -> tuple[dict, list[str]]:
  """Decodes `split_name` (already loaded: `ev`): (the report (see the module docstring),
  the output lines). progress: called after each search call."""
  began = time.time()
  ev = load_eval(trained, data_dir, split_name) if ev is None else ev
  search_args = dict(config=trained.search_config, beam_size=beam_size, alpha=alpha,
                     with_weights=False, slots=ev.batch_size)
  search_began = time.time()
  run, compiled = held_out.compile_ahead(
      searches.make_search(**search_args), trained.params, ev,
      store=cli.executable_store(searches.describe(**search_args)))
  outputs = held_out.decode(trained.params, ev, run, progress=progress)
  search_seconds = time.time() - search_began
  scores, hyps = held_out.translation_scores(outputs, ev.text.tgt, trained.vocabs.tgt)
  by_length = bleu.bleu_by_length(hyps, ev.text.tgt, [len(s.split()) for s in ev.text.src])
  report = {
      "split": split_name, "data_dir": data_dir, "sentences": ev.size,
      "checkpoint_step": trained.step, "averaged_steps": list(trained.averaged_steps),
      "ensemble": [m._asdict() for m in trained.members],
      "beam_size": beam_size, "length_penalty": alpha, **scores, "bleu_by_length": by_length,
      "search_seconds_incl_compile": round(search_seconds, 2),
      "compile_seconds": round(sum(compiled.seconds.values()), 2),
      "compilations": len(compiled.seconds) - len(compiled.loaded),
      "loaded_executables": len(compiled.loaded),
      "program_seconds_after_load": round(time.time() - began, 2)}
  return report, [inference.detokenize(o, trained) for o in outputs]


def _numbers(name: str, kind: type, lowest: float) -> list:
  try:
    values = [kind(v) for v in FLAGS[name].value]
  except ValueError:
    raise config_lib.ConfigError(f"{name}: expected {kind.__name__}s, got "
                                 f"{','.join(FLAGS[name].value)}") from None
  if any(v < lowest for v in values):
    raise config_lib.ConfigError(f"{name}: every value must be at least {lowest}")
  return values


def tuning_grid() -> list[tuple[int, float]]:
  """The (beam size, length penalty) settings that --beam_sizes asks for; raises
  ConfigError naming the flag before anything loads."""
  if FLAGS.tune_split.startswith("test"):
    raise config_lib.ConfigError(f"tune_split: {FLAGS.tune_split} is a test split; tune on val")
  if FLAGS.tune_split in FLAGS.split:
    raise config_lib.ConfigError("tune_split: the split tuned on must not be the one scored")
  return [(beam_size, alpha) for beam_size in _numbers("beam_sizes", int, 1)
          for alpha in _numbers("length_penalties", float, 0.0)]


def tune(trained: inference.Trained, data_dir: str, grid: list[tuple[int, float]],
         progress: Callable[[], None] = held_out.no_progress) -> dict:
  """Every setting of `grid` on --tune_split:
  {"split", "settings": [{beam_size, length_penalty, bleu_tok_lc}], "chosen": the best}."""
  rows = []
  ev = load_eval(trained, data_dir, FLAGS.tune_split)  # read and encoded once for the sweep
  for beam_size, alpha in grid:
    report, _ = evaluate(trained, data_dir, FLAGS.tune_split, beam_size, alpha, ev, progress)
    rows.append({"beam_size": beam_size, "length_penalty": alpha,
                 "bleu_tok_lc": report["bleu_tok_lc"]})
    print(f"{FLAGS.tune_split}: beam {beam_size}, length penalty {alpha}: "
          f"tok-lc BLEU {report['bleu_tok_lc']:.2f}", flush=True)
  best = max(rows, key=lambda r: r["bleu_tok_lc"])  # ties: the first in the flags' order
  return {"split": FLAGS.tune_split, "settings": rows, "chosen": best}


def print_report(report: dict) -> None:
  averaged = report["averaged_steps"]
  what = (f"checkpoint step {report['checkpoint_step']}" if len(averaged) <= 1
          else f"mean of the checkpoints at steps {', '.join(map(str, averaged))}")
  if report["ensemble"]:
    what = f"ensemble of {len(report['ensemble'])} models (" + ", ".join(
        f"{m['workdir']}" + ("" if m["seed_index"] is None else f" seed {m['seed_index']}")
        + f" step {m['step']}" for m in report["ensemble"]) + ")"
  print(f"{report['split']} ({report['sentences']} sentences), {what}, "
        f"beam {report['beam_size']}, length penalty {report['length_penalty']}:")
  for name in ("bleu_tok_lc", "bleu", "chrf"):
    print(f"  {name:12s} {report[name]:6.2f}   {report[name + '_signature']}")
  print("  source words  sentences  BLEU tok-lc")
  for row in report["bleu_by_length"]:
    print(f"  {row['bucket']:>12s}  {row['sentences']:9d}  {row['bleu_tok_lc']:11.2f}")


def check_writable(directory: str) -> None:
  """Creates `directory` if needed and writes a file there, or raises the OSError naming it."""
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryFile(dir=directory):
    pass


def splits_to_score(data_dir: str, src_lang: str, tgt_lang: str) -> list[str]:
  """The splits --split names: 'all' is every test split with both languages' files in
  `data_dir` (those absent listed on stderr); a named split that is absent is an error."""
  present = corpus.splits(data_dir, src_lang, tgt_lang)
  if FLAGS.split == ["all"]:
    chosen = sorted(s for s in present if s.startswith("test"))
    absent = [s for s in multi30k.TEST_SPLITS if s not in present]
    if absent:
      print(f"not in {data_dir} (skipped): {', '.join(absent)}", file=sys.stderr, flush=True)
    if not chosen:
      raise config_lib.ConfigError(f"split: no test split with {src_lang} and {tgt_lang} "
                                   f"files in {data_dir}")
    return chosen
  missing = [s for s in FLAGS.split if s not in present]
  if missing:
    raise config_lib.ConfigError(f"split: {', '.join(missing)} not in {data_dir} (present: "
                                 f"{', '.join(sorted(present)) or 'none'})")
  return list(FLAGS.split)


def _file_name(trained: inference.Trained, split: str) -> str:
  name = split
  if trained.seed_index is not None:
    name += f"_seed{trained.seed_index}"
  if trained.members:
    name += f"_ens{len(trained.members)}"
  if len(trained.averaged_steps) > 1:
    name += f"_avg{len(trained.averaged_steps)}"
  return name


def write_split(trained: inference.Trained, out_dir: str, report: dict, hyps: list[str]) -> None:
  """The split's outputs, report and BLEU-by-length plot in `out_dir`."""
  base = os.path.join(out_dir, _file_name(trained, report["split"]))
  atomic_write.write_atomically(f"{base}.{trained.config.data.tgt_lang}",
                                "".join(h + "\n" for h in hyps))
  atomic_write.write_atomically(f"{base}.json", json.dumps(report, indent=2) + "\n")
  plots.bleu_by_length(report["bleu_by_length"], f"{base}_bleu_by_length.png",
                       title=f"{report['split']}, beam {report['beam_size']}")
  print(f"wrote {base}.json")


def summary_table(reports: list[dict]) -> str:
  """One markdown row per split: sentences, tok-lc BLEU, sacreBLEU, chrF; then signatures."""
  lines = ["| split | sentences | BLEU tok-lc | sacreBLEU | chrF |", "|---|---|---|---|---|"]
  lines += [f"| {r['split']} | {r['sentences']:,} | {r['bleu_tok_lc']:.2f} | {r['bleu']:.2f} | "
            f"{r['chrf']:.2f} |" for r in reports]
  first = reports[0]
  lines += ["", f"Beam {first['beam_size']}, length penalty {first['length_penalty']}. "
            f"Signatures: BLEU tok-lc `{first['bleu_tok_lc_signature']}`; sacreBLEU "
            f"`{first['bleu_signature']}`; chrF `{first['chrf_signature']}`."]
  return "\n".join(lines) + "\n"


def write_summary(trained: inference.Trained, out_dir: str, reports: list[dict]) -> None:
  """The table of every split scored: W/eval/all.md and .json for --split=all, else
  <split1>+<split2>+....md and .json."""
  name = "all" if FLAGS.split == ["all"] else "+".join(r["split"] for r in reports)
  base = os.path.join(out_dir, _file_name(trained, name))
  table = summary_table(reports)
  print(table)
  atomic_write.write_atomically(f"{base}.md", table)
  atomic_write.write_atomically(f"{base}.json", json.dumps(
      [{k: v for k, v in r.items() if k != "bleu_by_length"} for r in reports], indent=2) + "\n")
  print(f"wrote {base}.md")


def main(argv):
  def body(watch):
    grid = tuning_grid() if FLAGS.beam_sizes else None
    out_dir = os.path.join(FLAGS.workdir, "eval")
    if os.path.isdir(FLAGS.workdir):
      check_writable(out_dir)  # before the decoding, not after it
    trained = cli.load_model()
    d = trained.config.data
    data_dir = FLAGS.data_dir or d.data_dir
    chosen = splits_to_score(data_dir, d.src_lang, d.tgt_lang)
    tuning = None
    beam_size, alpha = FLAGS.beam_size, FLAGS.length_penalty
    if grid:
      tuning = tune(trained, data_dir, grid, watch.progress)
      beam_size, alpha = tuning["chosen"]["beam_size"], tuning["chosen"]["length_penalty"]
    reports = []
    for split in chosen:
      report, hyps = evaluate(trained, data_dir, split, beam_size, alpha,
                              progress=watch.progress)
      if tuning:
        report["tuning"] = tuning
      print_report(report)
      write_split(trained, out_dir, report, hyps)
      reports.append(report)
    if len(FLAGS.split) > 1 or FLAGS.split == ["all"]:
      write_summary(trained, out_dir, reports)
  cli.run(body, argv, path=FLAGS.workdir, exit_at_once=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
