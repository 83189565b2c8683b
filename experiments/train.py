r"""Trains an attentional encoder-decoder.

  python -m experiments.train --workdir=runs/reverse \
      [--flagfile=experiments/configs/reverse.flags] [--attention=dot ...]

Running the same command again on the same workdir resumes from its latest
checkpoint. Defaults give the embedded task: reverse, additive attention.
"""

from __future__ import annotations

from absl import app, flags

from attn_jax import training
from experiments import cli, config_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and plots.")
flags.mark_flag_as_required("workdir")


def main(argv):
  def body():
    training.train_and_evaluate(config_flags.build_config(), FLAGS.workdir,
                                flagfile=config_flags.flagfile_text("workdir"))
  cli.run(body, argv, config_flags.ERROR_FLAG_NAMES, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
