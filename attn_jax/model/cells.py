"""GRU and LSTM steps with inputs projected ahead of time.

A cell's input-to-hidden projection is a separate function so callers can apply
it to all time steps in one matmul outside the `lax.scan`; only the recurrent
matmul `h @ U` stays inside the loop. Gates are fused into one matmul each way.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from attn_jax import config as config_lib
from attn_jax.model import layers, precision


class CellState(NamedTuple):
  h: jax.Array  # float32 [batch, hidden]
  c: jax.Array | None  # float32 [batch, hidden] (LSTM memory); None for the GRU


class Cell(NamedTuple):
  """A recurrent cell: `gates` blocks of `hidden` units in each projection."""
  gates: int
  step: Callable[[dict, CellState, jax.Array], CellState]
  has_memory: bool

  def init(self, key: jax.Array, input_size: int, hidden: int,
           layer_norm: bool = False) -> dict:
    """{"input": dense [in, gates*hidden], "recurrent": dense [hidden, gates*hidden]},
    with layer_norm also "ln_input", "ln_recurrent" [gates*hidden] (and "ln_cell" [hidden]
    for the LSTM): the step then normalises each projection (Ba et al. 2016, eq. 20-22)."""
    k_in, k_rec = jax.random.split(key)
    params = {
        "input": layers.dense_init(k_in, input_size, self.gates * hidden),
        "recurrent": layers.dense_init(
            k_rec, hidden, self.gates * hidden, bias=self.gates == 3,
            kernel_init=_stacked_orthogonal(self.gates)),
    }
    if layer_norm:
      params["ln_input"] = layers.layer_norm_init(self.gates * hidden)
      params["ln_recurrent"] = layers.layer_norm_init(self.gates * hidden)
      if self.has_memory:
        params["ln_cell"] = layers.layer_norm_init(hidden)
    if self.gates == 4:  # LSTM: forget-gate bias 1 (Jozefowicz et al. 2015), after any norm
      where = params["ln_input"] if layer_norm else params["input"]
      where["bias"] = where["bias"].at[hidden:2 * hidden].set(1.0)
    return params

  def zero_state(self, batch: int, hidden: int) -> CellState:
    zeros = jnp.zeros((batch, hidden), jnp.float32)
    return CellState(h=zeros, c=zeros if self.has_memory else None)


def _stacked_orthogonal(gates: int):
  """Orthogonal init of each [hidden, hidden] gate block of the recurrent kernel."""
  def init(key, shape, dtype):
    hidden = shape[0]
    blocks = [nn.initializers.orthogonal()(k, (hidden, hidden), dtype)
              for k in jax.random.split(key, gates)]
    return jnp.concatenate(blocks, axis=1)  # [hidden, gates*hidden]
  return init


def project_inputs(params: dict, x: jax.Array) -> jax.Array:
  """x [..., in] -> W x + b [..., gates*hidden], for every time step at once."""
  return layers.dense(params["input"], x)


def project_input_rows(params: dict, x: jax.Array, start: int) -> jax.Array:
  """The part of W x contributed by input features [start, start + x.shape[-1]).

  Lets a decoder project the embedding part of its input outside the loop and
  the attention part (known only inside the loop) at each step; no bias.
  """
  kernel = params["input"]["kernel"][start:start + x.shape[-1]]  # [part, gates*hidden]
  return precision.matmul(x, kernel)


def _normalised(params: dict, x_proj: jax.Array, h_proj: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
  """LN(W x + b) and LN(U h (+ b)) when the cell has layer norm; both unchanged otherwise."""
  if "ln_input" not in params:
    return x_proj, h_proj
  return (layers.layer_norm(params["ln_input"], x_proj),
          layers.layer_norm(params["ln_recurrent"], h_proj))


def gru_step(params: dict, state: CellState, x_proj: jax.Array) -> CellState:
  """One GRU step (Cho et al. 2014, eq. 5-8; reset applied after U h as in cuDNN).

  r = s(W_r x + U_r h + b_r); z = s(W_z x + U_z h + b_z);
  n = tanh(W_n x + b_n + r * (U_n h + b_hn)); h' = (1 - z) * n + z * h.
  With layer norm, W x + b and U h + b_h are each normalised over all gates first.

  Args:
    params: cell parameters.
    state: CellState with h [batch, hidden].
    x_proj: projected input W x + b [batch, 3*hidden].
  Returns:
    the next CellState.
  """
  x_proj, h_proj = _normalised(params, x_proj, layers.dense(params["recurrent"], state.h))
  xr, xz, xn = jnp.split(x_proj, 3, axis=-1)  # [batch, hidden] each
  hr, hz, hn = jnp.split(h_proj, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  n = jnp.tanh(xn + r * hn)
  return CellState(h=(1.0 - z) * n + z * state.h, c=None)


def lstm_step(params: dict, state: CellState, x_proj: jax.Array) -> CellState:
  """One LSTM step (Hochreiter & Schmidhuber 1997; forget gate of Gers et al. 2000).

  [i, f, g, o] = W x + U h + b; c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c').
  With layer norm (Ba et al. 2016, eq. 20-22): LN(W x + b) + LN(U h) and h' = s(o) tanh(LN(c')).

  Args:
    params: cell parameters.
    state: CellState with h, c [batch, hidden].
    x_proj: projected input W x + b [batch, 4*hidden].
  """
  x_proj, h_proj = _normalised(params, x_proj, layers.dense(params["recurrent"], state.h))
  i, f, g, o = jnp.split(x_proj + h_proj, 4, axis=-1)  # [batch, hidden] each
  c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
  c_out = layers.layer_norm(params["ln_cell"], c) if "ln_cell" in params else c
  return CellState(h=jax.nn.sigmoid(o) * jnp.tanh(c_out), c=c)


CELLS: dict[str, Cell] = {
    "gru": Cell(gates=3, step=gru_step, has_memory=False),
    "lstm": Cell(gates=4, step=lstm_step, has_memory=True),
}
config_lib.check_registry("cell", tuple(CELLS), config_lib.CELLS)


def masked_update(mask: jax.Array, new: CellState, old: CellState) -> CellState:
  """Keep `old` where mask [batch] is False: the carry stays put past a sequence's end."""
  return jax.tree.map(lambda n, o: jnp.where(mask[:, None], n, o), new, old)
