"""What every program shares (`experiments.cli`): the compilation-cache flag."""

from __future__ import annotations

from absl import flags
from absl.testing import flagsaver
import jax
import pytest

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
      cli.run(lambda: seen.append(jax.config.jax_compilation_cache_dir), ["program"])
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
  assert seen == [expected]
