"""What every program shares (`experiments.cli`): the compilation-cache flag, and inline
dispatch on CPU for the programs that train."""

from __future__ import annotations

import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import jax
import pytest

import conftest
from experiments import cli


@pytest.mark.parametrize("value, expected", [("/tmp/xla_cache_here", "/tmp/xla_cache_here"),
                                             ("none", None)])
def test_compilation_cache_flag_names_or_turns_off_the_cache(value, expected):
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  before = jax.config.jax_compilation_cache_dir
  seen = []
  try:
    with flagsaver.flagsaver(compilation_cache=value):
      cli.run(lambda _: seen.append(jax.config.jax_compilation_cache_dir), ["program"])
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
  assert seen == [expected]


_TRAINING_PROGRAM = r"""
import jax
from absl import flags
from experiments import cli
flags.FLAGS.mark_as_parsed()

def body(watch):
  x = jax.numpy.ones((512, 512))
  y = jax.jit(lambda a: jax.lax.fori_loop(0, 50, lambda i, b: jax.numpy.tanh(b @ a), a))(x)
  print(y.is_ready())  # returned only once computed (and its temporaries freed)

cli.run(body, ["program"], keep_freed_pages=True)
"""


def test_programs_that_train_dispatch_inline_on_cpu():
  """With freed pages kept, a step must free its temporaries before the next allocates."""
  if jax.default_backend() != "cpu":
    pytest.skip("an accelerator keeps dispatching asynchronously")
  assert conftest.run_python(_TRAINING_PROGRAM) == ["True"]


@pytest.mark.parametrize("program", ["translate", "evaluate"])
def test_decoding_programs_import_no_plotting_scoring_or_logging_they_do_not_use(program):
  """matplotlib only for --attention_plots, sacreBLEU only where BLEU is computed (evaluate
  imports it when it scores), TensorBoard's writer only in training."""
  code = (f"import sys, experiments.{program}; print(sorted({{m.split('.')[0] for m in "
          f"sys.modules}} & {{'matplotlib', 'sacrebleu', 'tensorboardX', 'torch'}}))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=conftest.ROOT, env=conftest.subprocess_env(), check=True)
  assert proc.stdout.strip() == "[]"
