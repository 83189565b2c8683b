"""GRU and LSTM steps against NumPy transcriptions of their equations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from attn_jax.model import cells

B, IN, HID = 3, 5, 4


def _inputs(cell_name: str, seed: int = 0, layer_norm: bool = False):
  cell = cells.CELLS[cell_name]
  params = helpers.randomize(cell.init(jax.random.key(seed), IN, HID, layer_norm), seed + 1)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, IN)).astype(np.float32)
  h = rng.normal(size=(B, HID)).astype(np.float32)
  c = rng.normal(size=(B, HID)).astype(np.float32) if cell.has_memory else None
  return cell, params, x, h, c


@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain", "layer_norm"])
@pytest.mark.parametrize("cell_name", ["gru", "lstm"])
def test_step_matches_numpy_reference(cell_name, layer_norm):
  cell, params, x, h, c = _inputs(cell_name, layer_norm=layer_norm)
  assert ("ln_input" in params) == layer_norm
  state = cells.CellState(h=jnp.asarray(h), c=None if c is None else jnp.asarray(c))
  new = cell.step(params, state, cells.project_inputs(params, jnp.asarray(x)))
  p = helpers.to_np(params)
  f64 = lambda a: None if a is None else a.astype(np.float64)
  ref_h, ref_c = helpers.cell_step(cell_name, p, (f64(h), f64(c)), f64(x))
  np.testing.assert_allclose(np.asarray(new.h), ref_h, rtol=1e-5, atol=1e-6)
  if cell_name == "gru":
    assert new.c is None
  else:
    np.testing.assert_allclose(np.asarray(new.c), ref_c, rtol=1e-5, atol=1e-6)


def test_gru_reset_gate_applies_after_recurrent_projection():
  """With r = 0 the candidate ignores U_n h + b_hn entirely (cuDNN form)."""
  cell, params, x, h, _ = _inputs("gru")
  params = jax.tree.map(lambda a: a, params)
  big_negative = params["input"]["bias"].at[:HID].set(-1e4)  # r -> 0
  params["input"]["bias"] = big_negative
  new = cell.step(params, cells.CellState(h=jnp.asarray(h), c=None),
                  cells.project_inputs(params, jnp.asarray(x)))
  p = helpers.to_np(params)
  xp = x @ p["input"]["kernel"] + p["input"]["bias"]
  hp = h @ p["recurrent"]["kernel"] + p["recurrent"]["bias"]
  z = helpers.sigmoid(xp[:, HID:2 * HID] + hp[:, HID:2 * HID])
  n = np.tanh(xp[:, 2 * HID:])
  np.testing.assert_allclose(np.asarray(new.h), (1 - z) * n + z * h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell_name,gates", [("gru", 3), ("lstm", 4)])
def test_init_shapes_and_biases(cell_name, gates):
  cell = cells.CELLS[cell_name]
  assert cell.gates == gates
  p = cell.init(jax.random.key(0), IN, HID)
  assert p["input"]["kernel"].shape == (IN, gates * HID)
  assert p["recurrent"]["kernel"].shape == (HID, gates * HID)
  if cell_name == "gru":
    np.testing.assert_array_equal(p["recurrent"]["bias"], np.zeros(3 * HID))
    np.testing.assert_array_equal(p["input"]["bias"], np.zeros(3 * HID))
  else:
    assert "bias" not in p["recurrent"]
    expected = np.zeros(4 * HID)
    expected[HID:2 * HID] = 1.0  # forget gate
    np.testing.assert_array_equal(p["input"]["bias"], expected)
  # Each gate block of the recurrent kernel is orthogonal.
  U = np.asarray(p["recurrent"]["kernel"], np.float64)
  for k in range(gates):
    blk = U[:, k * HID:(k + 1) * HID]
    np.testing.assert_allclose(blk.T @ blk, np.eye(HID), atol=1e-5)


@pytest.mark.parametrize("cell_name", ["gru", "lstm"])
def test_zero_state(cell_name):
  cell = cells.CELLS[cell_name]
  s = cell.zero_state(2, HID)
  np.testing.assert_array_equal(s.h, np.zeros((2, HID)))
  if cell.has_memory:
    np.testing.assert_array_equal(s.c, np.zeros((2, HID)))
  else:
    assert s.c is None


def test_project_input_rows_splits_the_projection():
  cell, params, x, _, _ = _inputs("lstm")
  full = cells.project_inputs(params, jnp.asarray(x))
  parts = (cells.project_input_rows(params, jnp.asarray(x[:, :2]), 0)
           + cells.project_input_rows(params, jnp.asarray(x[:, 2:]), 2)
           + params["input"]["bias"])
  np.testing.assert_allclose(np.asarray(parts), np.asarray(full), rtol=1e-5, atol=1e-6)


def test_masked_update_keeps_old_state_where_masked():
  old = cells.CellState(h=jnp.zeros((3, 2)), c=jnp.ones((3, 2)))
  new = cells.CellState(h=jnp.full((3, 2), 5.0), c=jnp.full((3, 2), 7.0))
  out = cells.masked_update(jnp.array([True, False, True]), new, old)
  np.testing.assert_array_equal(out.h, [[5, 5], [0, 0], [5, 5]])
  np.testing.assert_array_equal(out.c, [[7, 7], [1, 1], [7, 7]])
  gru = cells.masked_update(jnp.array([False, True, False]),
                            cells.CellState(h=new.h, c=None), cells.CellState(h=old.h, c=None))
  assert gru.c is None
  np.testing.assert_array_equal(gru.h, [[0, 0], [5, 5], [0, 0]])
