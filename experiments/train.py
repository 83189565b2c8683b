r"""Trains an attentional encoder-decoder.

  python -m experiments.train --workdir=runs/reverse \
      [--flagfile=experiments/configs/reverse.flags] [--attention=dot ...]

Running the same command again on the same workdir resumes from its latest
checkpoint. SIGTERM or SIGINT (Ctrl-C) lets the current step finish, saves a
checkpoint and exits with status 0; a second one (or --stop_grace seconds without
progress, when blocked in a device call) ends it at once. --stall_timeout seconds
without progress print every thread's stack and exit with status 1. Defaults give
the embedded task: reverse, additive attention.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
import jax

from attn_jax.train import inference, loop
from experiments import cli, config_flags, host_memory

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and plots.")
flags.DEFINE_string("coordinator_address", "",
                    "Multi-process training: host:port of process 0 (jax.distributed); "
                    "'auto' on a cloud TPU VM, where JAX finds it.")
flags.DEFINE_integer("num_processes", 1, "Multi-process training: number of processes.",
                     lower_bound=1)
flags.DEFINE_integer("process_id", 0, "Multi-process training: this process's index.",
                     lower_bound=0)
flags.DEFINE_boolean("debug_nans", False, "Stop at the first NaN any jitted function produces "
                     "(JAX's jax_debug_nans; slow).")
flags.DEFINE_boolean("compile_searches", True,
                     "When a translation run ends (not when it is stopped), compile "
                     "translate's greedy and default beam searches for every length bucket "
                     "into WORKDIR/compiled, so that the first translate loads them.")
flags.mark_flag_as_required("workdir")


def start_distributed() -> None:
  """jax.distributed.initialize from the flags; other processes than 0 print nothing."""
  if not FLAGS.coordinator_address:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU: cross-process
  if FLAGS.coordinator_address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if jax.process_index() != 0:
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # pylint: disable=consider-using-with


def main(argv):
  def body(watch):
    start_distributed()
    if FLAGS.debug_nans:
      jax.config.update("jax_debug_nans", True)
    config = config_flags.build_config()
    result = loop.train_and_evaluate(config, FLAGS.workdir,
                                     flagfile=config_flags.flagfile_text("workdir"),
                                     stop_requested=watch.stop_requested,
                                     progress=watch.progress, memory=host_memory.GLIBC)
    if (FLAGS.compile_searches and "stopped" not in result and jax.process_index() == 0
        and config.data.task == "translation"):
      try:
        lines = inference.compile_searches(FLAGS.workdir, memory=host_memory.GLIBC)
      except (inference.ModelLoadError, OSError) as e:  # the training itself is done
        print(f"warning: translate's searches not compiled ({e}); translate compiles them "
              f"when first run", file=sys.stderr, flush=True)
        lines = []
      for line in lines:
        print(f"translate's search compiled into {FLAGS.workdir}/compiled, {line}", flush=True)
  cli.run(body, argv, config_flags.ERROR_FLAG_NAMES, FLAGS.workdir,
          keep_freed_pages=FLAGS.keep_freed_pages, polls_stop=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
