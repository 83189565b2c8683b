"""flops.py's formulas against the matmuls actually traced in the model's forward pass."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import helpers
from attn_jax.model import seq2seq
from attn_jax.perf import flops


def _traced_matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> float:
  """2 m k n over every dot_general, scan bodies counted once per iteration."""
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (l_contract, _), (l_batch, _) = eqn.params["dimension_numbers"]
      lhs, rhs = (v.aval.shape for v in eqn.invars)
      out = eqn.outvars[0].aval.shape
      contract = math.prod(lhs[i] for i in l_contract)
      total += 2.0 * math.prod(out) * contract
      del rhs, l_batch
    repeat = eqn.params["length"] if eqn.primitive.name == "scan" else 1
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else [value]):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          total += repeat * _traced_matmul_flops(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          total += repeat * _traced_matmul_flops(sub)
  return total


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
  jaxpr = jax.make_jaxpr(lambda p: seq2seq.forward(p, b, config))(params).jaxpr
  expected = flops.forward(config, np.full(batch, src_len), np.full(batch, tgt_len))
  assert _traced_matmul_flops(jaxpr) == pytest.approx(expected, rel=1e-12)


def test_filler_rows_and_training_factor():
  config = helpers.tiny_model()
  one = flops.forward(config, [4], [3])
  assert flops.forward(config, [4, 9], [3, 0]) == one  # tgt_len 0: a filler row
  assert flops.train(config, [4], [3]) == 3 * one
