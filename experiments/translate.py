r"""Translates raw text with a trained model: one output line per input line.

  python -m experiments.translate --workdir=runs/multi30k_en_de \
      --input=source.en --output=output.de [--checkpoint=best] [--beam_size=5] \
      [--length_penalty=0.6] [--batch_size=16] [--attention_plots=DIR --num_plots=N] \
      [--ensemble=W2,W3] [--timings=FILE]

`-` reads stdin or writes stdout. Input is strict UTF-8 split on "\n"; a blank
input line gives an empty output line. The input is decoded 1,024 lines at a time
(sentences batched by length within them, one compilation per call shape), and the
lines go out as each such chunk is done: to OUTPUT.partial, renamed to OUTPUT once
every line is translated. SIGINT or SIGTERM stops the program with one line (status
130 or 143) and leaves OUTPUT.partial holding the lines translated so far, in input
order; nothing under the name OUTPUT until the end. Inputs over 300 lines get a
progress line per chunk on stderr. A line of more than --max_source_len subwords is
cut before word starts into pieces that long, translated one by one and joined
(a warning line says so); outputs are limited in length relative to their source,
so no line can stall a run. With --ensemble
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

from attn_jax import config as config_lib
from attn_jax.data import corpus
from attn_jax.decode import searches
from attn_jax.evaluation import plots
from attn_jax.model import attention, seq2seq
from attn_jax.perf import rss
from attn_jax.train import inference
from experiments import cli, host_memory, watchdog

FLAGS = flags.FLAGS

cli.define_decoding_flags()
flags.DEFINE_string("input", "-", "Source text, one sentence per line; - for stdin.")
flags.DEFINE_string("output", "-", "Where translations go, one per line; - for stdout.")
flags.DEFINE_string("attention_plots", "", "Directory for attention heatmaps (PNG), if given.")
flags.DEFINE_integer("num_plots", 5, "Sentences drawn (the first non-blank ones).", lower_bound=0)
flags.DEFINE_integer("max_source_len", 0,
                     "Longest source line translated whole, in subwords; a longer one is cut "
                     "before word starts into pieces this long, translated one by one and "
                     "joined, with a warning (0: twice the model's training --max_len).",
                     lower_bound=0)
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


PROGRESS_LINES = 300  # inputs longer than this get a progress line per chunk


class Output:
  """Translated lines written as they are done: to stdout for '-', else to PATH.partial,
  renamed to PATH by finish(); a stopped run keeps PATH.partial with the lines so far."""

  def __init__(self, path: str):
    self.path, self.lines, self.seconds = path, 0, 0.0
    self.partial = None if path == "-" else path + ".partial"
    self._file = None

  def write(self, lines: list[str]) -> None:
    began = time.perf_counter()
    if self._file is None:
      self._file = (sys.stdout if self.partial is None
                    else open(self.partial, "w", encoding="utf-8"))  # pylint: disable=consider-using-with
    self._file.write("".join(line + "\n" for line in lines))
    self._file.flush()
    self.lines += len(lines)
    self.seconds += time.perf_counter() - began

  def finish(self) -> None:
    """Closes the output; PATH.partial becomes PATH (written empty if no line came)."""
    if self._file is None and self.partial is not None:
      self.write([])
    if self.partial is not None:
      self._file.close()
      os.replace(self.partial, self.path)

  def stop(self, failed: bool) -> str:
    """Closes a stopped run's output: kept (stopped by a signal) or removed (an error);
    says what is left."""
    if self._file is None or self.partial is None:
      return ""
    self._file.close()
    if failed:
      os.remove(self.partial)
      return ""
    return f"; the {self.lines:,} lines translated so far are in {self.partial}"


def check_paths(source: str, output: str) -> None:
  """One error naming the flag when --output would overwrite --input or has no directory."""
  if output == "-":
    return
  if source != "-" and os.path.exists(output) and os.path.samefile(source, output):
    raise config_lib.ConfigError(f"output: {output} is the --input file; name another")
  directory = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(directory):
    raise config_lib.ConfigError(f"output: directory {directory} does not exist")
  if os.path.isdir(output):
    raise config_lib.ConfigError(f"output: {output} is a directory")


def plot_attention(trained: inference.Trained, outputs, directory: str, count: int) -> None:
  """The first `count` outputs' attention; a multi-head model's heads beside their mean."""
  os.makedirs(directory, exist_ok=True)
  drawn = [(i, o) for i, o in enumerate(outputs) if o is not None][:count]
  model = trained.config.model
  for i, o in drawn:
    names = (trained.vocabs.src.pieces(o.src), trained.vocabs.tgt.pieces(o.output))
    panels, titles = [o.weights], ["mean of the heads"]
    if attention.VARIANTS[model.attention].heads is not None and not trained.members:
      heads = seq2seq.head_weights(trained.params, o.src, o.output, model)  # [out, N, src]
      panels += [heads[:, n] for n in range(heads.shape[1])]
      titles += [f"head {n + 1}" for n in range(heads.shape[1])]
    fig = plots.attention_grid(
        [(w, *names) for w in panels], titles=titles if len(panels) > 1 else None,
        title=f"line {i + 1}, beam {FLAGS.beam_size}, checkpoint step {trained.step}")
    plots.save(fig, os.path.join(directory, f"attention_line{i + 1}.png"))


COUNTS = ("compilations", "loaded")  # stages' entries that count rather than time


def write_timings(path: str, stages: dict) -> None:
  """stages (name -> seconds, in program order, and the counts of COUNTS) as JSON, with
  their sum as "total" and the program's peak resident memory so far ("peak_rss_gib")."""
  total = sum(v for k, v in stages.items() if k not in COUNTS)
  with open(path, "w", encoding="utf-8") as f:
    json.dump({**stages, "total": total, "peak_rss_gib": rss.peak_rss_gib()}, f, indent=2)
    f.write("\n")


def _report_chunks(output: Output, trained: inference.Trained, total: int, began: float):
  """The `done` callback of inference.translate: writes each chunk's lines, and a progress
  line for long inputs."""
  def done(first: int, outputs: list) -> None:
    del first  # chunks come in input order
    output.write([inference.detokenize(o, trained) for o in outputs])
    if total > PROGRESS_LINES:
      rate = output.lines / max(time.perf_counter() - began, 1e-9)
      print(f"translated {output.lines:,} of {total:,} lines ({rate:,.1f} sentences/s)",
            file=sys.stderr, flush=True)
  return done


def main(argv):
  def body(watch):
    stages = {"start_up": time.perf_counter() - BEGAN}
    lap = time.perf_counter()

    def done(stage: str) -> None:  # the time since the last stage ended is `stage`'s
      nonlocal lap
      now = time.perf_counter()
      stages[stage], lap = now - lap, now

    check_paths(FLAGS.input, FLAGS.output)
    sentences = read_input(FLAGS.input)
    done("read_input")
    trained = cli.load_model()
    done("load_model")
    has_weights = attention.VARIANTS[trained.config.model.attention].has_weights
    plotting = bool(FLAGS.attention_plots and FLAGS.num_plots and has_weights)
    search_args = dict(config=trained.search_config, beam_size=FLAGS.beam_size,
                       alpha=FLAGS.length_penalty, with_weights=plotting, slots=FLAGS.batch_size)
    search = searches.make_search(**search_args)
    store = cli.executable_store(searches.describe(**search_args))
    output = Output(FLAGS.output)
    try:
      outputs = inference.translate(
          trained, sentences, search, FLAGS.batch_size, stages, watch.progress,
          host_memory.GLIBC, FLAGS.max_source_len or None,
          done=_report_chunks(output, trained, len(sentences), time.perf_counter()),
          store=store)
      output.finish()
    except watchdog.Interrupted as e:
      raise watchdog.Interrupted(e.name, output.stop(failed=False)) from None
    except BaseException:
      output.stop(failed=True)
      raise
    lap = time.perf_counter()
    stages["search"] -= output.seconds  # the chunks were written during the search
    stages["write_output"] = output.seconds
    if plotting:
      plot_attention(trained, outputs, FLAGS.attention_plots, FLAGS.num_plots)
      done("plots")
    if FLAGS.timings:
      write_timings(FLAGS.timings, stages)
  cli.run(body, argv, path=FLAGS.output, exit_at_once=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
