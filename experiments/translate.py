r"""Translates raw text with a trained model: one output line per input line.

  python -m experiments.translate --workdir=runs/multi30k_en_de \
      --input=source.en --output=output.de [--checkpoint=best] [--beam_size=5] \
      [--length_penalty=0.6] [--batch_size=16] [--attention_plots=DIR --num_plots=N] \
      [--ensemble=W2,W3] [--timings=FILE]

`-` reads stdin or writes stdout. Input is strict UTF-8 split on "\n"; a blank
input line gives an empty output line. Sentences are batched by length and
decoded by the jitted search, one compilation per length bucket. With --ensemble
the models of --workdir and of the listed workdirs decode together, their
next-token probabilities averaged (attention plots show the members' mean).
--timings writes where the program's time went, stage by stage, as JSON.
"""

from __future__ import annotations

import time

BEGAN = time.perf_counter()  # the program's start-up is timed from here (--timings)

import json
import os
import sys

from absl import app, flags

from attn_jax.data import corpus
from attn_jax.decode import searches
from attn_jax.evaluation import plots
from attn_jax.model import attention
from attn_jax.train import inference
from experiments import cli, host_memory

FLAGS = flags.FLAGS

cli.define_decoding_flags()
flags.DEFINE_string("input", "-", "Source text, one sentence per line; - for stdin.")
flags.DEFINE_string("output", "-", "Where translations go, one per line; - for stdout.")
flags.DEFINE_string("attention_plots", "", "Directory for attention heatmaps (PNG), if given.")
flags.DEFINE_integer("num_plots", 5, "Sentences drawn (the first non-blank ones).", lower_bound=0)
flags.DEFINE_string("timings", "",
                    "Write the seconds of each stage (start-up, reading, loading the model, "
                    "segmenting, compiling, searching, writing) here as JSON, if given.")


def read_input(path: str) -> list[str]:
  if path == "-":
    raw = sys.stdin.buffer.read()
    return corpus.decode_lines(raw, "<stdin>") if raw else []
  with open(path, "rb") as f:
    raw = f.read()
  return corpus.decode_lines(raw, path) if raw else []


def write_output(path: str, lines: list[str]) -> None:
  text = "".join(line + "\n" for line in lines)
  if path == "-":
    sys.stdout.write(text)
    sys.stdout.flush()
    return
  tmp = path + ".tmp"  # a failed run never leaves half a file under the final name
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def plot_attention(trained: inference.Trained, outputs, directory: str, count: int) -> None:
  os.makedirs(directory, exist_ok=True)
  drawn = [(i, o) for i, o in enumerate(outputs) if o is not None][:count]
  for i, o in drawn:
    fig = plots.attention_grid(
        [(o.weights, trained.vocabs.src.pieces(o.src), trained.vocabs.tgt.pieces(o.output))],
        title=f"line {i + 1}, beam {FLAGS.beam_size}, checkpoint step {trained.step}")
    plots.save(fig, os.path.join(directory, f"attention_line{i + 1}.png"))


def write_timings(path: str, stages: dict) -> None:
  """stages (name -> seconds, in program order, and the number of compilations) as JSON,
  with their sum as "total"."""
  total = sum(v for k, v in stages.items() if k != "compilations")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({**stages, "total": total}, f, indent=2)
    f.write("\n")


def main(argv):
  def body(watch):
    stages = {"start_up": time.perf_counter() - BEGAN}
    lap = time.perf_counter()

    def done(stage: str) -> None:  # the time since the last stage ended is `stage`'s
      nonlocal lap
      now = time.perf_counter()
      stages[stage], lap = now - lap, now

    sentences = read_input(FLAGS.input)
    done("read_input")
    trained = cli.load_model()
    done("load_model")
    has_weights = attention.VARIANTS[trained.config.model.attention].has_weights
    plotting = bool(FLAGS.attention_plots and FLAGS.num_plots and has_weights)
    search = searches.make_search(trained.search_config, FLAGS.beam_size, FLAGS.length_penalty,
                               with_weights=plotting, slots=FLAGS.batch_size)
    outputs = inference.translate(trained, sentences, search, FLAGS.batch_size, stages,
                                  watch.progress, host_memory.GLIBC)
    lap = time.perf_counter()
    write_output(FLAGS.output, [inference.detokenize(o, trained) for o in outputs])
    done("write_output")
    if plotting:
      plot_attention(trained, outputs, FLAGS.attention_plots, FLAGS.num_plots)
      done("plots")
    if FLAGS.timings:
      write_timings(FLAGS.timings, stages)
  cli.run(body, argv, path=FLAGS.output)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
