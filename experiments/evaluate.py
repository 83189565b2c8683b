r"""Scores a trained translation model on one split of a parallel corpus.

  python -m experiments.evaluate --workdir=runs/multi30k_en_de \
      --data_dir=../shared/data/multi30k --split=test_2016_flickr [--beam_size=5] \
      [--length_penalty=0.6] [--checkpoint=best]

Prints and writes W/eval/<split>.json: sacreBLEU (cased, 13a) with its signature,
tokenised lowercased BLEU (the Multi30k papers' protocol), chrF, BLEU per
source-length bucket (also drawn in W/eval/<split>_bleu_by_length.png), timings;
the detokenised outputs go to W/eval/<split>.<tgt_lang>, one line per sentence.
In a workdir trained with --num_seeds, --seed_index=k picks a model and the
files are named <split>_seed<k>.*; with --average=N (the mean parameters of the
N latest checkpoints up to --checkpoint) they end in _avg<N>.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

from attn_jax import bleu, evaluation, inference, inputs, plots, steps, translation
from experiments import cli

FLAGS = flags.FLAGS

cli.define_decoding_flags()
flags.DEFINE_string("data_dir", "",
                    "Directory of <split>.<lang>[.gz] files; default: the one trained on.")
flags.DEFINE_string("split", "test_2016_flickr", "Split to score (never tune on a test split).")


def _write_atomically(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def evaluate(trained: inference.Trained, data_dir: str, split_name: str
             ) -> tuple[dict, list[str]]:
  """Decodes `split_name`: (the report (see the module docstring), the output lines)."""
  began = time.time()
  d = trained.config.data
  split = translation.load_split(data_dir, split_name, d.src_lang, d.tgt_lang, trained.vocabs,
                                 inputs.bucket_widths(d.max_len))
  ev = inputs.eval_data(split, FLAGS.batch_size)
  search = steps.make_search(trained.config.model, FLAGS.beam_size, FLAGS.length_penalty)
  search_began = time.time()
  outputs = evaluation.decode(trained.params, ev, search)
  search_seconds = time.time() - search_began
  scores, hyps = evaluation.translation_scores(outputs, ev.text.tgt, trained.vocabs.tgt)
  by_length = bleu.bleu_by_length(hyps, ev.text.tgt, [len(s.split()) for s in ev.text.src])
  report = {
      "split": split_name, "data_dir": data_dir, "sentences": ev.size,
      "checkpoint_step": trained.step, "averaged_steps": list(trained.averaged_steps),
      "beam_size": FLAGS.beam_size,
      "length_penalty": FLAGS.length_penalty, **scores, "bleu_by_length": by_length,
      "search_seconds_incl_compile": round(search_seconds, 2),
      "program_seconds_after_load": round(time.time() - began, 2)}
  return report, [inference.detokenize(o, trained) for o in outputs]


def print_report(report: dict) -> None:
  averaged = report["averaged_steps"]
  what = (f"checkpoint step {report['checkpoint_step']}" if len(averaged) <= 1
          else f"mean of the checkpoints at steps {', '.join(map(str, averaged))}")
  print(f"{report['split']} ({report['sentences']} sentences), {what}, "
        f"beam {report['beam_size']}, length penalty {report['length_penalty']}:")
  for name in ("bleu_tok_lc", "bleu", "chrf"):
    print(f"  {name:12s} {report[name]:6.2f}   {report[name + '_signature']}")
  print("  source words  sentences  BLEU tok-lc")
  for row in report["bleu_by_length"]:
    print(f"  {row['bucket']:>12s}  {row['sentences']:9d}  {row['bleu_tok_lc']:11.2f}")


def main(argv):
  def body():
    trained = inference.load(FLAGS.workdir, FLAGS.checkpoint, FLAGS.seed_index,
                             average=FLAGS.average)
    data_dir = FLAGS.data_dir or trained.config.data.data_dir
    report, hyps = evaluate(trained, data_dir, FLAGS.split)
    print_report(report)
    out_dir = os.path.join(FLAGS.workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    name = FLAGS.split
    if trained.seed_index is not None:
      name += f"_seed{trained.seed_index}"
    if len(trained.averaged_steps) > 1:
      name += f"_avg{len(trained.averaged_steps)}"
    base = os.path.join(out_dir, name)
    _write_atomically(f"{base}.{trained.config.data.tgt_lang}", "".join(h + "\n" for h in hyps))
    _write_atomically(f"{base}.json", json.dumps(report, indent=2) + "\n")
    plots.bleu_by_length(report["bleu_by_length"], f"{base}_bleu_by_length.png",
                         title=f"{FLAGS.split}, beam {FLAGS.beam_size}")
    print(f"wrote {base}.json")
  cli.run(body, argv, path=FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
