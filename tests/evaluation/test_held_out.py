"""evaluate(): batch-size invariance, filler rows, examples for plots."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

import helpers
from attn_jax.data import batching, dataset, pipeline, tasks, translation
from attn_jax.decode import searches
from attn_jax.evaluation import held_out
from attn_jax.train import steps

CONFIG = helpers.tiny_config(data_overrides=dict(task="copy", eval_size=12))


@functools.lru_cache(maxsize=None)
def _setup():
  _, eval_ds = tasks.make_datasets(CONFIG.data)
  params = helpers.init_params(CONFIG.model, seed=0)
  eval_step = steps.make_eval_step(CONFIG.model)
  greedy = searches.make_greedy(CONFIG.model, max_len=eval_ds.tgt_out.shape[1])
  return eval_ds, params, eval_step, greedy


def test_metrics_do_not_depend_on_the_batch_size():
  eval_ds, params, eval_step, greedy = _setup()
  a, _ = held_out.evaluate(params, dataset.eval_batches(eval_ds, 8), eval_step, greedy)  # 8 + (4 real, 4 filler)
  b, _ = held_out.evaluate(params, dataset.eval_batches(eval_ds, 12), eval_step, greedy)  # one full batch
  assert set(a) == set(b) == {"loss", "perplexity", "token_accuracy", "alignment_accuracy",
                              "attention_entropy", "coverage_overlap", "zero_weight_share",
                              "sequence_accuracy",
                              "greedy_token_accuracy", "sequence_accuracy_by_length"}
  assert a.pop("sequence_accuracy_by_length") == b.pop("sequence_accuracy_by_length")
  for k in a:
    assert math.isfinite(a[k])
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5)
  for k in ("token_accuracy", "alignment_accuracy", "zero_weight_share", "sequence_accuracy",
            "greedy_token_accuracy"):
    assert a[k] == b[k]  # ratios of integer counts


def test_sequence_accuracy_matches_greedy_outputs():
  eval_ds, params, eval_step, greedy = _setup()
  result, _ = held_out.evaluate(params, dataset.eval_batches(eval_ds, 12), eval_step, greedy)
  hyp = jax.device_get(greedy(params, eval_ds.src, eval_ds.src_len))
  exact = [int(hyp.lengths[i]) == int(eval_ds.tgt_len[i])
           and np.array_equal(hyp.tokens[i, :eval_ds.tgt_len[i]], eval_ds.tgt_out[i, :eval_ds.tgt_len[i]])
           for i in range(12)]
  assert result["sequence_accuracy"] == sum(exact) / 12
  # By source length (EOS excluded), in buckets of 5: 1-5, 6-10, ...
  by_length = result["sequence_accuracy_by_length"]
  expected = {}
  for i in range(12):
    lo = (int(eval_ds.src_len[i]) - 2) // 5 * 5 + 1
    expected.setdefault(f"{lo}-{lo + 4}", []).append(exact[i])
  assert by_length == {k: sum(v) / len(v) for k, v in expected.items()}
  assert list(by_length) == sorted(by_length, key=lambda k: int(k.split("-")[0]))


def test_examples_and_no_weights():
  eval_ds, params, eval_step, greedy = _setup()
  result, examples = held_out.evaluate(params, dataset.eval_batches(eval_ds, 8), eval_step, greedy, num_examples=3)
  assert len(examples) == 3
  hyp = jax.device_get(greedy(params, eval_ds.src[:8], eval_ds.src_len[:8]))
  for i, e in enumerate(examples):
    n, m = int(eval_ds.src_len[i]), int(hyp.lengths[i])
    np.testing.assert_array_equal(e.src, eval_ds.src[i, :n])
    np.testing.assert_array_equal(e.output, hyp.tokens[i, :m])
    assert e.weights.shape == (m, n)
  no_weights, _ = held_out.evaluate(params, dataset.eval_batches(eval_ds, 8), eval_step, greedy, has_weights=False)
  assert "alignment_accuracy" not in no_weights and "attention_entropy" not in no_weights
  assert no_weights["sequence_accuracy"] == result["sequence_accuracy"]


def test_examples_never_come_from_filler_rows():
  eval_ds, params, eval_step, greedy = _setup()
  small = dataset.take(eval_ds, np.arange(3))  # 3 real rows, 5 filler rows in a batch of 8
  _, examples = held_out.evaluate(params, dataset.eval_batches(small, 8), eval_step, greedy, num_examples=5)
  assert len(examples) == 3


def test_decode_calls_group_batches_of_one_width_real_rows_first():
  """decode_calls: consecutive batches of a width, `batches` a call, one shape per width
  whatever the input (call_shape), every line once, real rows first and filler rows
  (copies of row 0) after."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 12, 70)
  pairs = [rng.integers(3, 20, n).astype(np.int32) for n in lengths]
  buckets = batching.bucket_pairs(pairs, pairs, (4, 8, 13))
  ev = pipeline.eval_data(translation.Split(buckets, None), 4)
  calls = held_out.decode_calls(ev, batches=3)
  assert sorted(np.concatenate([c.lines for c in calls]).tolist()) == list(range(70))
  by_line = {int(line): (b.src[r], b.src_len[r]) for lines, b in ev.batches
             for r, line in enumerate(lines)}
  for call in calls:
    assert call.src.shape == held_out.call_shape(call.src.shape[1], 4, 3) == (12, call.src.shape[1])
    assert len(call.lines) > 0
    for r, line in enumerate(call.lines):
      np.testing.assert_array_equal(call.src[r], by_line[int(line)][0])
      assert call.src_len[r] == by_line[int(line)][1]
    assert (call.src[len(call.lines):] == call.src[0]).all()
  widths = [c.src.shape[1] for c in calls]
  assert widths == sorted(widths) and len(set(widths)) == 3 < len(calls)  # a width split
  assert len({c.src.shape for c in calls}) == 3
