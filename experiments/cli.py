"""What every program here shares: flag parsing and errors as one line on stderr.

A program's expected failures (bad flags, bad data, unusable checkpoints, a
diverged run, an unreadable file) end with one "error: ..." line naming the
flag or file and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from absl import flags, logging
import jax

from attn_jax import config as config_lib, executable_store as executable_store_lib
from attn_jax.data import corpus, multi30k, vocab
from attn_jax.decode import searches
from attn_jax.evaluation import held_out
from attn_jax.executable_store import ExecutableStore
from attn_jax.train import checkpoint, inference, loop, resume, writer_lock
from experiments import host_memory, watchdog

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "compilation_cache",
    os.environ.get("JAX_COMPILATION_CACHE_DIR")
    or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                    "attn_jax", "xla"),
    "XLA's persistent compilation cache: a program compiles each step function once per "
    "shape and machine, later runs load it from here. 'none' turns it off.")

flags.DEFINE_float(
    "stall_timeout", 600.0,
    "Seconds without any step, evaluation, decoding or compilation progress after which the "
    "program prints the stacks of all threads and exits with status 1 (0: never).",
    lower_bound=0.0)
flags.DEFINE_float(
    "stop_grace", 30.0,
    "After SIGTERM or SIGINT, seconds the program may go without progress while it stops "
    "(a training run checkpoints first) before it is ended at once; a second signal ends it "
    "at once.", lower_bound=0.0)

EXPECTED_ERRORS = (corpus.CorpusError, vocab.VocabError, resume.IncompatibleCheckpointError,
                   resume.CorruptCheckpointError, loop.NonFiniteLossError,
                   inference.ModelLoadError, writer_lock.WorkdirBusyError,
                   checkpoint.UnreadableCheckpointError, checkpoint.CheckpointSaveError,
                   multi30k.DownloadError)


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with one 'error:' line instead of its two-line usage hint.

  A --workdir typed on the command line wins over one a --flagfile sets, wherever the
  flagfile comes (absl lets the later win): `--workdir=NEW --flagfile=OLD/flags.txt`
  starts NEW with OLD's settings, and says so."""
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    fail(str(e).removeprefix("ERROR::").strip())  # absl's prefix for an unreadable flagfile
  typed = _typed_value(argv[1:], "workdir")
  if typed is not None and "workdir" in FLAGS and FLAGS.workdir != typed:
    print(f"note: --workdir={typed} from the command line, not {FLAGS.workdir} from a "
          f"flagfile", file=sys.stderr)
    FLAGS.workdir = typed
  return rest


def _typed_value(args: list[str], name: str) -> str | None:
  """The last value of --name given directly in `args` (not inside a flagfile), or None."""
  value = None
  for i, arg in enumerate(args):
    if arg == "--":
      break
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(args):
      value = args[i + 1]
  return value


def run(body: Callable[[watchdog.Watchdog], None], argv: list[str],
        flag_names: dict[str, str] | None = None, path: str = "",
        keep_freed_pages: bool = False, polls_stop: bool = False,
        exit_at_once: bool = False) -> None:
  """Runs `body(watch)` under a watchdog (--stall_timeout, --stop_grace), with the
  expected errors turned into one line each.

  body reports its progress to `watch` (watch.progress, or watch.stop_requested after each
  training step).
  flag_names: config field -> flag name where they differ (ConfigError names fields).
  path: what an OSError without a file name is about.
  keep_freed_pages: host_memory.keep_freed_pages() first, and synchronous dispatch on CPU
    (programs that train; see below).
  polls_stop: body asks watch.stop_requested() and stops by itself (training: after a
    checkpoint); otherwise a stop signal interrupts it with one line, status 128 + signal.
  exit_at_once: once body has returned (its files written and closed), flush the output
    and end the process without the interpreter's shutdown, which joins the runtime's idle
    threads and tears down the backend for 0.3 s on a CPU (programs that only read the
    workdir's checkpoints: translate, evaluate).
  """
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if keep_freed_pages:
    host_memory.keep_freed_pages()
    # Each step's temporaries must be freed before the next step allocates its own, or
    # both sit in the kept heap at once. With asynchronous dispatch the CPU runtime frees
    # a step's temporaries on a worker thread after its outputs are ready, racing the next
    # step's allocation (traced: in 1 of 60 steps the new buffer went above the old one,
    # and the heap kept both). Run inline, a call returns once its temporaries are freed.
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  _quiet_closed_event_loops()
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # library INFO logs (Orbax) only on request
  jax.config.update("jax_compilation_cache_dir",
                    None if FLAGS.compilation_cache == "none" else FLAGS.compilation_cache)
  # Cache every compilation: a search per length bucket compiles in well under JAX's
  # default one-second threshold, yet together they are most of a translate run's start.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    with watchdog.Watchdog(FLAGS.stall_timeout, FLAGS.stop_grace,
                           interrupt=not polls_stop) as watch:
      body(watch)
    if exit_at_once:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(0)  # pylint: disable=protected-access
  except watchdog.Interrupted as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(128 + signal.Signals[e.name].value)
  except config_lib.ConfigError as e:  # an option invalid by itself or for the data
    field, _, why = str(e).partition(": ")
    fail(f"flag --{(flag_names or {}).get(field, field)}: {why}")
  except EXPECTED_ERRORS as e:
    fail(str(e))
  except OSError as e:
    fail(f"{e.filename or path}: {e.strerror or e}")


def _quiet_closed_event_loops() -> None:
  """After a failed asynchronous restore (a damaged checkpoint), Orbax's pending reads
  finish later and call back into an event loop it has closed: Python reports each as an
  unraisable "Event loop is closed" RuntimeError, dozens of tracebacks after a recovery
  that went well. Those are dropped; any other unraisable error is reported as before."""
  default = sys.unraisablehook

  def hook(unraisable) -> None:
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
      default(unraisable)

  sys.unraisablehook = hook


def define_decoding_flags() -> None:
  """Flags of the programs that decode with a trained model."""
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/ and the vocabulary.")
  flags.DEFINE_string("checkpoint", "best",
                      "Checkpoint to load: best (by validation score), latest, or a step.")
  flags.DEFINE_integer("seed_index", 0, "Which model of a workdir trained with --num_seeds.",
                       lower_bound=0)
  flags.DEFINE_integer("average", 1,
                       "Decode with the mean parameters of this many latest checkpoints up to "
                       "--checkpoint (checkpoint averaging; 1: that checkpoint alone).",
                       lower_bound=1)
  flags.DEFINE_list("ensemble", [],
                    "Further workdirs whose models decode together with --workdir's as one "
                    "ensemble (their next-token probabilities averaged), each at its own "
                    "--checkpoint; every model of a --num_seeds workdir joins.")
  flags.DEFINE_bool("ensemble_seeds", False,
                    "Decode with every model of a --num_seeds workdir as one ensemble "
                    "(what --ensemble does for each workdir it names).")
  flags.DEFINE_integer("beam_size", searches.DEFAULT_BEAM_SIZE, "Beam size; 1 is greedy search.",
                       lower_bound=1)
  flags.DEFINE_float("length_penalty", searches.DEFAULT_LENGTH_PENALTY,
                     "GNMT length penalty exponent alpha (beam search); 0 ranks by log p.",
                     lower_bound=0.0)
  flags.DEFINE_bool("reuse_compiled", True,
                    "Load the searches an earlier run compiled for this model, backend and "
                    "code from WORKDIR/compiled/, and store the ones compiled now there.")
  flags.DEFINE_integer("batch_size", held_out.DECODE_BATCH_SIZE,
                       "Sentences decoded at once (the beams in flight; a finished sentence's "
                       "beam takes the next sentence).", lower_bound=1)
  flags.mark_flag_as_required("workdir")


def executable_store(what: str) -> ExecutableStore | None:
  """The store of --workdir's compiled searches for `what` (searches.describe), unless
  --noreuse_compiled."""
  if not FLAGS.reuse_compiled:
    return None
  return executable_store_lib.for_workdir(FLAGS.workdir, what)


def load_model() -> inference.Trained:
  """The model (or ensemble) that the decoding flags name."""
  if FLAGS.ensemble or FLAGS.ensemble_seeds:
    if FLAGS["seed_index"].present:
      raise inference.ModelLoadError("--seed_index: not with --ensemble or --ensemble_seeds, "
                                     "which take every model of each workdir")
    return inference.load_ensemble([FLAGS.workdir, *FLAGS.ensemble], FLAGS.checkpoint,
                                   FLAGS.average)
  return inference.load(FLAGS.workdir, FLAGS.checkpoint, FLAGS.seed_index,
                        average=FLAGS.average)
