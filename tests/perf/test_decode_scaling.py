"""decode_scaling.py and its program: sources cut from held-out text, outputs of exactly
n + 1 tokens, the side-by-side table."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import conftest
import helpers
from attn_jax.config import EOS_ID
from attn_jax.perf import decode_scaling
from attn_jax.study import comparison
from attn_jax.train import inference, loop


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  """Two tiny synthetic runs (additive and monotonic attention) of 2 steps each."""
  root = tmp_path_factory.mktemp("scaling")
  out = {}
  for variant in ("additive", "monotonic"):
    config = helpers.tiny_config(model_overrides=dict(attention=variant),
                                 data_overrides=dict(eval_size=40, max_len=8),
                                 train_overrides=dict(num_steps=2, eval_every=2,
                                                      checkpoint_every=2, num_plots=0))
    out[variant] = str(root / variant)
    loop.train_and_evaluate(config, out[variant])
  return out


def test_long_sources_join_the_held_out_sources_in_line_order(workdirs):
  trained = inference.load(workdirs["additive"], "best", 0, translation_only=False)
  ev = comparison.eval_data(trained, "eval", 8, workdirs["additive"])
  src, src_len = decode_scaling.long_sources(ev, 6, 3)
  stream = []
  for line in range(ev.size):
    for lines, batch in ev.batches:
      rows = list(lines)
      if line in rows:
        row = rows.index(line)
        stream += batch.src[row, :batch.src_len[row] - 1].tolist()
  np.testing.assert_array_equal(src[:, :6].reshape(-1), stream[:18])
  assert (src[:, 6] == EOS_ID).all() and (src_len == 7).all()
  with pytest.raises(ValueError, match="fewer than 1000 x 6"):
    decode_scaling.long_sources(ev, 6, 1000)


@pytest.mark.parametrize("variant", ["additive", "monotonic"])
def test_every_output_runs_to_n_plus_one_tokens(workdirs, variant):
  trained = inference.load(workdirs[variant], "best", 0, translation_only=False)
  ev = comparison.eval_data(trained, "eval", 8, workdirs[variant])
  src, src_len = decode_scaling.long_sources(ev, 9, 2)
  from attn_jax.decode import searches  # pylint: disable=g-import-not-at-top
  search = searches.make_search(trained.config.model, 2, ratio=1.0, extra=0)
  hyp = search(decode_scaling.without_eos(trained.params), src, src_len)
  assert (np.asarray(hyp.lengths) == 10).all() and not (np.asarray(hyp.tokens) == EOS_ID).any()
  timing = decode_scaling.time_search(trained, src, src_len, 1, repeats=1)
  assert timing.length == 9 and timing.sentences == 2 and timing.seconds > 0


def test_program_prints_the_side_by_side_table(workdirs, tmp_path):
  out = str(tmp_path / "scaling.json")
  proc = conftest.run_program("decode_scaling",
                              f"--workdirs={workdirs['additive']},{workdirs['monotonic']}",
                              "--lengths=4,8", "--rows=2", "--beam_sizes=1,2", f"--json={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "|---" not in line]
  assert len(rows) == 1 + 4 and rows[0].endswith("| ratio |")
  with open(out, encoding="utf-8") as f:
    figures = json.load(f)
  assert [t["length"] for t in figures[workdirs["monotonic"]]] == [4, 4, 8, 8]
  bad = conftest.run_program("decode_scaling", f"--workdirs={workdirs['additive']}",
                             "--lengths=4,x")
  assert conftest.error_line(bad) == "error: flag --lengths: expected positive integers, got 4,x"
  short = conftest.run_program("decode_scaling", f"--workdirs={workdirs['additive']}",
                               "--lengths=100000", "--rows=2")
  assert conftest.error_line(short).startswith("error: flag --lengths: the held-out set has ")
  missing = conftest.run_program("decode_scaling", f"--workdirs={os.path.dirname(out)}/none")
  assert conftest.error_line(missing).startswith("error: ")
