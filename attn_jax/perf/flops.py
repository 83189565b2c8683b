"""Matmul FLOPs of the model, counted from the config (for utilisation figures).

A matmul of [m, k] by [k, n] costs 2 m k n FLOPs; elementwise work, softmax and
the loss are left out. Counts use real lengths (EOS included), not padded
widths, so padding never counts as useful work. Training costs three forward
passes: the forward itself and a backward with two matmuls per forward one.

The recurrent layers are counted in closed form; an attention variant is
counted by tracing its own functions (`matmul_flops`), so a new variant in
the registry is counted without a formula written for it.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.config import ModelConfig
from attn_jax.model import attention, cells, decoder


class AttentionFlops(NamedTuple):
  """Matmul FLOPs of one sentence's attention, by what they scale with."""
  per_key: int  # prepare_keys, per source position
  per_query: int  # per decoder step, whatever the source length
  per_pair: int  # per (decoder step, source position): scores and context


def _jaxpr_matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> int:
  """2 m k n over every dot_general; a scan body counts once per iteration, a cond its
  costliest branch, any other sub-program (remat, pjit, custom_jvp) once."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(
          lhs_shape[i] for i in lhs_contract)
    subs = [_jaxpr_matmul_flops(sub) for sub in _sub_jaxprs(eqn.params)]
    if eqn.primitive.name == "cond":
      total += max(subs, default=0)
    else:
      total += sum(subs) * eqn.params.get("length", 1)
  return total


def _sub_jaxprs(params: dict):
  for value in params.values():
    for sub in (value if isinstance(value, (tuple, list)) else [value]):
      if isinstance(sub, jax.extend.core.ClosedJaxpr):
        yield sub.jaxpr
      elif isinstance(sub, jax.extend.core.Jaxpr):
        yield sub


def matmul_flops(fn: Callable, *args) -> int:
  """Matmul FLOPs of fn(*args), traced (args may be jax.ShapeDtypeStruct); nothing runs."""
  return _jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


@functools.cache
def attention_flops(name: str, sizes: attention.Sizes) -> AttentionFlops:
  """A registry variant's matmul FLOPs for one example, from tracing prepare_keys and
  attend at two source lengths (every variant is linear in the source length)."""
  variant = attention.VARIANTS[name]
  params = jax.eval_shape(functools.partial(variant.init, sizes=sizes), jax.random.key(0))
  f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)

  def at_length(length):
    states, summary = f32(length, sizes.key), f32(sizes.key)
    keys = jax.eval_shape(variant.prepare_keys, params, states, summary)
    attend = functools.partial(variant.attend, window=1)
    step = matmul_flops(attend, params, f32(sizes.query), keys, states,
                        jax.ShapeDtypeStruct((length,), jnp.bool_),
                        jax.ShapeDtypeStruct((), jnp.int32))
    return matmul_flops(variant.prepare_keys, params, states, summary), step

  (keys_1, step_1), (keys_2, step_2) = at_length(1), at_length(2)
  return AttentionFlops(per_key=keys_2 - keys_1, per_query=2 * step_1 - step_2,
                        per_pair=step_2 - step_1)


def _encoder_per_token(config: ModelConfig) -> int:
  gates = cells.CELLS[config.cell].gates
  h, directions = config.encoder_hidden_size, (2 if config.bidirectional else 1)
  total, size_in = 0, config.embed_size
  for _ in range(config.encoder_layers):
    total += directions * 2 * (size_in + h) * gates * h  # input and recurrent projections
    size_in = directions * h
  return total


def _decoder_per_token(config: ModelConfig) -> int:
  gates, h = cells.CELLS[config.cell].gates, config.hidden_size
  return (2 * (decoder.cell_input_size(config) + h) * gates * h  # cell
          + 2 * decoder.readout_size(config) * h  # W_r or W_c
          + 2 * h * config.tgt_vocab_size)  # W_o (or E^T, tied)


def forward(config: ModelConfig, src_len: np.ndarray, tgt_len: np.ndarray) -> float:
  """Matmul FLOPs of the teacher-forced forward pass over sentence pairs.

  src_len, tgt_len: int [pairs], real lengths with EOS (tgt_len 0 marks a filler row).
  """
  src_len = np.asarray(src_len, np.float64)
  tgt_len = np.asarray(tgt_len, np.float64)
  real = tgt_len > 0
  src_len, tgt_len = src_len[real], tgt_len[real]
  h, a = config.hidden_size, config.encoder_output_size
  att = attention_flops(config.attention, decoder.attention_sizes(config))
  bridges = 2 if cells.CELLS[config.cell].has_memory else 1
  per_sentence = bridges * 2 * a * h
  return float(np.sum(src_len * (_encoder_per_token(config) + att.per_key)
                      + tgt_len * (_decoder_per_token(config) + att.per_query)
                      + src_len * tgt_len * att.per_pair + per_sentence))


def train(config: ModelConfig, src_len: np.ndarray, tgt_len: np.ndarray) -> float:
  """Matmul FLOPs of one training step (forward and backward) over sentence pairs."""
  return 3.0 * forward(config, src_len, tgt_len)
