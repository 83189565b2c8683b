"""flops.py: the closed-form count against the matmuls traced in the model's forward pass,
the attention counts against the equations counted by hand, the counter on known programs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax import config as config_lib
from attn_jax.model import attention, seq2seq
from attn_jax.perf import flops


def _hand_counted(name: str, s: attention.Sizes) -> flops.AttentionFlops:
  """The variants' matmuls counted by hand from their equations (per key, per step, per pair)."""
  context = 2 * s.key  # weights @ values, per pair
  dot = flops.AttentionFlops(0, 0, 2 * s.query + context)
  local_p = 2 * s.query * s.attention + 2 * s.attention  # v_p^T tanh(W_p h_t)
  base = config_lib.score_of(name)  # a sparse normaliser adds no matmul
  if name in ("coverage_additive", "monotonic"):  # w_c cov_j, g v/||v||, r: elementwise
    base = "additive"
  if name == "mocha":  # a monotonic and a chunk energy, each additive's; one context
    return flops.AttentionFlops(4 * s.key * s.attention, 4 * s.query * s.attention,
                                4 * s.attention + context)
  counted = {
      "none": flops.AttentionFlops(0, 0, 0),
      "dot": dot, "scaled_dot": dot,
      "general": dot._replace(per_key=2 * s.key * s.query),  # W k once per key
      "additive": flops.AttentionFlops(2 * s.key * s.attention, 2 * s.query * s.attention,
                                       2 * s.attention + context),
      "location": flops.AttentionFlops(0, 2 * s.query * s.positions, context),
      # U k and W^V k once per key, W q once per step; the heads' scores and contexts
      **dict.fromkeys(("multihead_additive", "multihead_scaled_dot"), flops.AttentionFlops(
          2 * s.key * (s.attention + s.key), 2 * s.query * s.attention,
          2 * s.attention + context)),
  }[base]
  if name.startswith("local_p_"):
    counted = counted._replace(per_query=counted.per_query + local_p)
  return counted


@pytest.mark.parametrize("name", attention.VARIANTS)
def test_traced_attention_counts_match_the_equations(name):
  sizes = attention.Sizes(query=6, key=6 if config_lib.needs_equal_sizes(name) else 10,
                          attention=10, positions=9, heads=2 if "multihead" in name else 1)
  assert flops.attention_flops(name, sizes) == _hand_counted(name, sizes)


def test_matmul_counter_on_known_programs():
  x, w = jax.ShapeDtypeStruct((3, 4), np.float32), jax.ShapeDtypeStruct((4, 5), np.float32)
  assert flops.matmul_flops(jnp.matmul, x, w) == 2 * 3 * 4 * 5
  batched = jax.ShapeDtypeStruct((7, 3, 4), np.float32)
  assert flops.matmul_flops(jax.vmap(jnp.matmul, (0, None)), batched, w) == 7 * 2 * 3 * 4 * 5
  square = jax.ShapeDtypeStruct((4, 4), np.float32)
  looped = lambda c, m: jax.lax.scan(lambda c, _: (c @ m, None), c, None, length=6)[0]
  assert flops.matmul_flops(jax.checkpoint(looped), x, square) == 6 * 2 * 3 * 4 * 4
  branch = lambda p, a: jax.lax.cond(p, lambda: a @ a @ a, lambda: a @ a)
  pred = jax.ShapeDtypeStruct((), np.bool_)
  assert flops.matmul_flops(branch, pred, square) == 2 * 2 * 4 * 4 * 4  # the costlier branch


@pytest.mark.parametrize("overrides", [
    {},
    {"cell": "lstm", "query": "previous"},
    {"attention": "dot", "bidirectional": False, "input_feeding": False},
    {"attention": "dot", "hidden_size": 6},  # keys projected to the query size
    {"attention": "general", "encoder_layers": 2},
    {"attention": "scaled_dot", "query": "previous", "input_feeding": False},
    {"attention": "none"},
    {"tie_embeddings": True},
    {"attention": "location", "location_positions": 4},
    {"attention": "local_m_additive"},
    {"attention": "local_p_general", "query": "previous"},
])
def test_formula_matches_the_traced_forward_pass(rng, overrides):
  config = helpers.tiny_model(**overrides)
  params = helpers.init_params(config)
  src_len, tgt_len, batch = 6, 5, 3  # no padding: every traced matmul is useful work
  b = helpers.random_batch(rng, [src_len] * batch, [tgt_len] * batch, src_len, tgt_len)
  expected = flops.forward(config, np.full(batch, src_len), np.full(batch, tgt_len))
  assert flops.matmul_flops(lambda p: seq2seq.forward(p, b, config), params) == expected


def test_filler_rows_and_training_factor():
  config = helpers.tiny_model()
  one = flops.forward(config, [4], [3])
  assert flops.forward(config, [4, 9], [3, 0]) == one  # tgt_len 0: a filler row
  assert flops.train(config, [4], [3]) == 3 * one
