"""Bidirectional, multi-layer RNN encoder as explicit masked `lax.scan`s.

Padding is masked, never packed: past a sequence's length the carry stays as it
was, and the backward direction reads each sequence through a length-aware flip
(positions [0, len) reversed, padding left in place), so batches need no sorting.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.config import ModelConfig
from attn_jax.model import cells, layers


class EncoderOutput(NamedTuple):
  states: jax.Array  # float32 [batch, src_len, A]: top layer, 0 at padding; A = encoder_output_size
  final: cells.CellState  # h, c: float32 [batch, A]: top layer's last states, directions concatenated
  mask: jax.Array  # bool [batch, src_len]: True at real tokens (EOS included)


def init(key: jax.Array, config: ModelConfig) -> dict:
  """{"embed", "layer_0": {"fwd", "bwd"?}, ...}."""
  cell = cells.CELLS[config.cell]
  keys = jax.random.split(key, 1 + 2 * config.encoder_layers)
  params = {"embed": layers.embed_init(keys[0], config.src_vocab_size, config.embed_size)}
  in_size, h = config.embed_size, config.encoder_hidden_size
  for i in range(config.encoder_layers):
    layer = {"fwd": cell.init(keys[1 + 2 * i], in_size, h, config.layer_norm)}
    if config.bidirectional:
      layer["bwd"] = cell.init(keys[2 + 2 * i], in_size, h, config.layer_norm)
    params[f"layer_{i}"] = layer
    in_size = config.encoder_output_size
  return params


def reverse_padded(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses x [batch, time, ...] within each sequence's length; padding stays put.

  Its own inverse: reverse_padded(reverse_padded(x, n), n) == x.
  """
  t = jnp.arange(x.shape[1])[None, :]  # [1, time]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [batch, time]
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def run_directions(cell: cells.Cell, params: list[dict], xs: list[jax.Array], mask: jax.Array,
                   hidden: int, remat: bool = False) -> list[tuple[jax.Array, cells.CellState]]:
  """Directions of one layer, each left to right over its own inputs, in one `lax.scan`.

  The directions are independent; stepping them together halves the loop's
  iterations for a bidirectional layer (the backward direction's inputs come
  already flipped, reverse_padded).

  Args:
    cell: the recurrent cell.
    params: each direction's parameters.
    xs: each direction's inputs [batch, time, in].
    mask: bool [batch, time], the same for every direction.
    hidden: state size.
    remat: under differentiation, recompute each step's activations in the backward
      pass instead of keeping them for every time step (jax.checkpoint of the step).
  Returns:
    per direction: outputs [batch, time, hidden] (0 at padding) and the final
    CellState, which is the state at each sequence's last real token.
  """
  x_proj = [jnp.swapaxes(cells.project_inputs(p, x), 0, 1)  # [time, batch, gates*hidden]: one matmul
            for p, x in zip(params, xs)]
  mask_t = jnp.swapaxes(mask, 0, 1)  # [time, batch]

  def step(states, inputs):
    xps, m = inputs  # per direction [batch, gates*hidden]; [batch]
    states = [cells.masked_update(m, cell.step(p, s, xp), s)
              for p, s, xp in zip(params, states, xps)]
    return states, [jnp.where(m[:, None], s.h, 0.0) for s in states]

  if remat:
    step = jax.checkpoint(step, prevent_cse=False)  # the scan already keeps steps apart
  zero = cell.zero_state(mask.shape[0], hidden)
  finals, outputs = jax.lax.scan(step, [zero] * len(params), (x_proj, mask_t))
  return [(jnp.swapaxes(o, 0, 1), f) for o, f in zip(outputs, finals)]  # [batch, time, hidden]


def _concat_states(a: cells.CellState, b: cells.CellState) -> cells.CellState:
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y], axis=-1), a, b)


def encode(params: dict, src: jax.Array, src_len: jax.Array, config: ModelConfig,
           dropout_key: jax.Array | None = None, remat: bool = False) -> EncoderOutput:
  """Encodes a padded batch.

  Args:
    params: encoder parameters.
    src: int32 [batch, src_len] token ids, EOS-terminated, PAD after.
    src_len: int32 [batch] real lengths (EOS included), >= 1.
    config: model options.
    dropout_key: PRNG key, or None for evaluation.
    remat: recompute the time steps' activations in the backward pass (run_directions).
  Returns:
    EncoderOutput.
  """
  cell, h = cells.CELLS[config.cell], config.encoder_hidden_size
  mask = jnp.arange(src.shape[1])[None, :] < src_len[:, None]  # [batch, src_len]
  keys = (jax.random.split(dropout_key, config.encoder_layers)
          if dropout_key is not None else [None] * config.encoder_layers)
  x = layers.embed(params["embed"], src)  # [batch, src_len, embed]
  for i in range(config.encoder_layers):
    x = layers.dropout(keys[i], x, config.dropout)
    layer = params[f"layer_{i}"]
    if config.bidirectional:
      (out, final), (out_b, final_b) = run_directions(
          cell, [layer["fwd"], layer["bwd"]], [x, reverse_padded(x, src_len)], mask, h, remat)
      out = jnp.concatenate([out, reverse_padded(out_b, src_len)], axis=-1)  # [batch, src_len, 2*h]
      final = _concat_states(final, final_b)  # [batch, 2*h]
    else:
      [(out, final)] = run_directions(cell, [layer["fwd"]], [x], mask, h, remat)
    x = out
  return EncoderOutput(states=x, final=final, mask=mask)
