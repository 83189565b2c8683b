"""The chunked output layer and loss against the whole-logits loss and NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn_jax.evaluation import metrics
from attn_jax.model import output_loss

B, T, H, V = 3, 7, 5, 11


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  kernel = rng.normal(scale=0.7, size=(H, V)).astype(np.float32)
  bias = rng.normal(size=(V,)).astype(np.float32)
  v = rng.normal(size=(B, T, H)).astype(np.float32)
  targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
  mask = np.arange(T)[None, :] < np.array([7, 3, 0])[:, None]  # a full, a short, a filler row
  return kernel, bias, v, targets, mask


def _whole(kernel, bias, v, targets, mask, smoothing):
  """metrics.cross_entropy_sum and argmax hits on the whole logits."""
  logits = v @ kernel + bias
  loss = metrics.cross_entropy_sum(logits, targets, mask, smoothing)
  return loss, jnp.sum((jnp.argmax(logits, -1) == targets) & mask)


def _numpy_loss(kernel, bias, v, targets, mask, smoothing):
  """Float64 sum over real positions of -sum_w q(w) log softmax(v W + b)_w."""
  z = v.astype(np.float64) @ kernel.astype(np.float64) + bias
  log_p = z - z.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  q = np.full(z.shape, smoothing / V)
  np.put_along_axis(q, targets[..., None], (1.0 - smoothing) + smoothing / V, axis=-1)
  return float(np.sum(-(q * log_p).sum(-1) * mask))


@pytest.mark.parametrize("chunk_rows", [0, 1, 3, 6, 9, 100])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_values_match_whole_logits_and_numpy(chunk_rows, smoothing):
  args = _inputs()
  loss, hits = output_loss.sums(*map(jnp.asarray, args), smoothing, chunk_rows)
  ref_loss, ref_hits = _whole(*map(jnp.asarray, args), smoothing)
  np.testing.assert_allclose(float(loss), _numpy_loss(*args, smoothing), rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
  assert int(hits) == int(ref_hits)


@pytest.mark.parametrize("chunk_rows", [0, 3, 6])  # one chunk; 1 and 2 steps (7 = 3 x 2 + 1)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradients_match_autodiff_of_whole_logits(chunk_rows, smoothing):
  kernel, bias, v, targets, mask = map(jnp.asarray, _inputs(1))
  scale = 0.37  # a cotangent other than 1 reaches the saved gradients

  def chunked(k, b, x):
    return scale * output_loss.sums(k, b, x, targets, mask, smoothing, chunk_rows)[0]

  def whole(k, b, x):
    return scale * _whole(k, b, x, targets, mask, smoothing)[0]
  got = jax.grad(chunked, argnums=(0, 1, 2))(kernel, bias, v)
  ref = jax.grad(whole, argnums=(0, 1, 2))(kernel, bias, v)
  for g, r in zip(got, ref):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-6)
  # Padding positions get no gradient.
  np.testing.assert_array_equal(np.asarray(got[2])[~np.asarray(mask)], 0.0)


def test_masked_positions_change_nothing():
  kernel, bias, v, targets, mask = _inputs(2)
  v2, targets2 = v.copy(), targets.copy()
  v2[~mask] = 1e3  # garbage at padding
  targets2[~mask] = 0
  a = output_loss.sums(*map(jnp.asarray, (kernel, bias, v, targets, mask)), 0.1, 3)
  b = output_loss.sums(*map(jnp.asarray, (kernel, bias, v2, targets2, mask)), 0.1, 3)
  assert float(a[0]) == float(b[0]) and int(a[1]) == int(b[1])


def test_vmapped_over_seeds_matches_each_seed():
  stacked = [np.stack(x) for x in zip(_inputs(3), _inputs(4))]
  loss_fn = lambda k, b, x, y, m: output_loss.sums(k, b, x, y, m, 0.1, 6)[0]
  grads = jax.vmap(jax.grad(loss_fn, argnums=(0, 1, 2)))(*map(jnp.asarray, stacked))
  for seed in range(2):
    one = jax.grad(loss_fn, argnums=(0, 1, 2))(*(jnp.asarray(x[seed]) for x in stacked))
    for g, r in zip(grads, one):
      np.testing.assert_allclose(np.asarray(g[seed]), np.asarray(r), rtol=1e-5, atol=1e-6)


def test_chunk_steps():
  assert output_loss.chunk_steps(64, 256, 30) == 4
  assert output_loss.chunk_steps(512, 256, 30) == 1  # at least one position
  assert output_loss.chunk_steps(64, 0, 30) == 30  # 0: everything at once
  assert output_loss.chunk_steps(2, 256, 30) == 30  # never more than the length


def _bf16(x) -> np.ndarray:
  """x rounded to bfloat16, back to float32."""
  return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32))


@pytest.mark.parametrize("chunk_rows", [0, 3])
def test_bfloat16_products_round_the_operands(chunk_rows):
  kernel, bias, v, targets, mask = _inputs(2)
  loss, _ = output_loss.sums(*map(jnp.asarray, (kernel, bias, v, targets, mask)), 0.1,
                             chunk_rows, "bfloat16")
  np.testing.assert_allclose(float(loss), _numpy_loss(_bf16(kernel), bias, _bf16(v), targets,
                                                      mask, 0.1), rtol=1e-5)
  grad = lambda dtype: jax.grad(
      lambda k, x: output_loss.sums(k, jnp.asarray(bias), x, targets, mask, 0.1, chunk_rows,
                                    dtype)[0], argnums=(0, 1))(jnp.asarray(kernel), jnp.asarray(v))
  for low, full in zip(grad("bfloat16"), grad("float32")):
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, full, rtol=0.05, atol=0.02)  # bfloat16 keeps 8 bits
