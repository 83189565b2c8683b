r"""Decoding time against source length, trained models side by side.

  python -m experiments.decode_scaling --workdirs=runs/cmp/additive,runs/cmp/monotonic \
      [--lengths=25,50,100,200,400,800] [--rows=16] [--beam_sizes=1,5] \
      [--split=test_2016_flickr] [--checkpoint=best] [--json=OUT.json]

For each source length n, `--rows` sources of n tokens cut from the held-out sources joined
end to end (translation: --split; synthetic tasks: their held-out set) are decoded with
EOS suppressed, so every output has n + 1 tokens (attn_jax/perf/decode_scaling.py), and the
search is timed after its compilation (median of 3 calls). Prints milliseconds per sentence
and microseconds per output token for each workdir's model 0, and with two workdirs the
ratio of the first one's time to the second's: global attention's time per token grows
with n, hard monotonic attention's should not.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from attn_jax.perf import decode_scaling
from attn_jax.study import comparison
from attn_jax.train import inference
from experiments import cli

FLAGS = flags.FLAGS

flags.DEFINE_list("workdirs", None, "Trained workdirs (their model 0) to time, side by side.")
flags.DEFINE_list("lengths", ["25", "50", "100", "200", "400", "800"],
                  "Source lengths n (tokens before EOS).")
flags.DEFINE_integer("rows", 16, "Sentences decoded together per length.", lower_bound=1)
flags.DEFINE_list("beam_sizes", ["1", "5"], "Beam sizes (1: greedy).")
flags.DEFINE_string("split", "test_2016_flickr", "Translation: the split whose sources are cut.")
flags.DEFINE_string("checkpoint", "best", "Checkpoint of every workdir: best, latest or a step.")
flags.DEFINE_string("json", "", "Also write the figures to this JSON file.")
flags.mark_flag_as_required("workdirs")


def _positive_ints(name: str) -> tuple[int, ...]:
  try:
    values = tuple(int(v) for v in FLAGS[name].value)
  except ValueError:
    values = ()
  if not values or min(values) < 1:
    cli.fail(f"flag --{name}: expected positive integers, got {','.join(FLAGS[name].value)}")
  return values


def _table(results: dict[str, list[decode_scaling.Timing]]) -> str:
  names = list(results)
  head = ["n", "beam"] + [f"{os.path.basename(os.path.normpath(w))} ms/sentence (µs/token)"
                          for w in names]
  if len(names) == 2:
    head.append("ratio")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row in zip(*results.values()):
    cells = [str(row[0].length), str(row[0].beam_size)]
    cells += [f"{t.ms_per_sentence:.1f} ({t.us_per_output_token:.0f})" for t in row]
    if len(row) == 2:
      cells.append(f"{row[0].seconds / row[1].seconds:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  lengths, beam_sizes = _positive_ints("lengths"), _positive_ints("beam_sizes")

  def body(watch):
    del watch
    results = {}
    for workdir in FLAGS.workdirs:
      trained = inference.load(workdir, FLAGS.checkpoint, 0, translation_only=False)
      ev = comparison.eval_data(trained, FLAGS.split, 64, workdir)
      print(f"{workdir}: {trained.config.model.attention} attention", flush=True)
      try:
        results[workdir] = decode_scaling.scaling(trained, ev, lengths, FLAGS.rows, beam_sizes)
      except ValueError as e:
        cli.fail(f"flag --lengths: {e}")
    print(_table(results))
    if FLAGS.json:
      with open(FLAGS.json, "w", encoding="utf-8") as f:
        json.dump({w: [{**t._asdict(), "ms_per_sentence": t.ms_per_sentence,
                        "us_per_output_token": t.us_per_output_token} for t in timings]
                   for w, timings in results.items()}, f, indent=2)

  cli.run(body, argv)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
