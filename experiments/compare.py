r"""Compares attention variants, several seeds each, and writes the reports.

  python -m experiments.compare --workdir=runs/compare_reverse \
      --variants=none,dot,general,additive,location,local_m_general,local_p_general \
      --num_seeds=3 [--flagfile=experiments/configs/compare_reverse60.flags]

Every variant trains with the model, data and training flags (only --attention
differs), its seeds as one vmapped program (--num_seeds); then each seed is
scored at its best checkpoint and W/report.md, W/bleu_by_length.png,
W/attention_grid.png and W/beam_sweep.md are written (attn_jax/study/comparison.py).
Rerunning the command continues an interrupted comparison; SIGTERM or SIGINT
checkpoints the run in progress and exits.
"""

from __future__ import annotations

import time

from absl import app, flags

from attn_jax.model import attention
from attn_jax.study import comparison
from experiments import cli, config_flags, host_memory

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory of the comparison: one subdirectory per run.")
flags.DEFINE_list("variants", "none,dot,general,additive,location,local_m_general,local_p_general",
                  "Attention variants to compare.")
flags.DEFINE_string("baseline", "", "Variant the others are tested against; default: the first.")
flags.DEFINE_string("split", "test_2016_flickr",
                    "Translation: the split scored (synthetic tasks: their held-out set).")
flags.DEFINE_integer("beam_size", 5, "Beam size of the scored decoding; 1 is greedy.",
                     lower_bound=1)
flags.DEFINE_float("length_penalty", 1.0, "GNMT length penalty of the scored decoding.",
                   lower_bound=0.0)
flags.DEFINE_list("beam_sizes", "1,2,5,10,25", "Beam sizes of the sweep.")
flags.DEFINE_list("length_penalties", "0,0.6,1.0", "Length penalties of the sweep.")
flags.DEFINE_boolean("ablation", True,
                     "Also train the best variant with every --query x --input_feeding.")
flags.mark_flag_as_required("workdir")


def _numbers(name: str, kind: type) -> tuple:
  try:
    values = tuple(kind(v) for v in FLAGS[name].value)
  except ValueError:
    cli.fail(f"flag --{name}: expected {kind.__name__}s, got {','.join(FLAGS[name].value)}")
  if not values or min(values) < (1 if kind is int else 0):
    cli.fail(f"flag --{name}: expected {'positive' if kind is int else 'non-negative'} values")
  return values


def _plan() -> comparison.Plan:
  variants = tuple(FLAGS.variants)
  unknown = [v for v in variants if v not in attention.VARIANTS]
  if unknown or not variants:
    cli.fail(f"flag --variants: unknown variant(s) {', '.join(unknown) or '(none given)'}; "
             f"known: {', '.join(attention.VARIANTS)}")
  baseline = FLAGS.baseline or variants[0]
  if baseline not in variants:
    cli.fail(f"flag --baseline: {baseline!r} is not one of --variants")
  return comparison.Plan(variants=variants, baseline=baseline, split=FLAGS.split,
                         beam_size=FLAGS.beam_size, length_penalty=FLAGS.length_penalty,
                         beam_sizes=_numbers("beam_sizes", int),
                         length_penalties=_numbers("length_penalties", float),
                         ablation=FLAGS.ablation, batch_size=FLAGS.batch_size)


def main(argv):
  def body(watch):
    plan = _plan()
    began = time.time()
    stopped = comparison.compare(config_flags.build_config(), FLAGS.workdir, plan,
                                 watch.stop_requested, watch.progress, host_memory.GLIBC)
    if stopped:
      print(f"stopped by {stopped}: run the same command to continue", flush=True)
      return
    print(f"wrote {FLAGS.workdir}/report.md ({time.time() - began:.0f}s)", flush=True)
  cli.run(body, argv, config_flags.ERROR_FLAG_NAMES, FLAGS.workdir,
          keep_freed_pages=FLAGS.keep_freed_pages, polls_stop=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
