"""Dense, embedding and dropout layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from attn_jax import layers


def test_dense_and_embed():
  init = layers.dense_init(jax.random.key(0), 3, 4)
  assert init["kernel"].shape == (3, 4)
  np.testing.assert_array_equal(init["bias"], np.zeros(4))
  x = np.arange(6, dtype=np.float32).reshape(2, 3)
  rng = np.random.default_rng(0)
  p = {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "bias": jnp.arange(4.0)}
  np.testing.assert_allclose(np.asarray(layers.dense(p, x)),
                             x @ np.asarray(p["kernel"]) + np.arange(4), rtol=1e-6)
  nb = layers.dense_init(jax.random.key(0), 3, 4, bias=False)
  assert set(nb) == {"kernel"}
  e = layers.embed_init(jax.random.key(0), 5, 2)
  np.testing.assert_array_equal(np.asarray(layers.embed(e, jnp.array([[4, 0]]))),
                                np.asarray(e["embedding"])[[[4, 0]]])


def test_dropout():
  x = jnp.ones((200, 50))
  assert layers.dropout(None, x, 0.5) is x
  assert layers.dropout(jax.random.key(0), x, 0.0) is x
  y = np.asarray(layers.dropout(jax.random.key(0), x, 0.25))
  assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
  assert abs((y == 0).mean() - 0.25) < 0.02  # 10,000 draws


def _bf16(x) -> np.ndarray:
  """x rounded to bfloat16 (to nearest, ties to even), as float64."""
  return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_low_precision_products_round_their_operands_and_accumulate_in_float32():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 5)).astype(np.float32)
  kernel = rng.normal(size=(5, 4)).astype(np.float32)
  g = rng.normal(size=(2, 3, 4)).astype(np.float32)
  y, vjp = jax.vjp(lambda x, k: layers.matmul(x, layers.LowPrecision(k, "bfloat16")), x, kernel)
  d_x, d_kernel = vjp(jnp.asarray(g))
  assert y.dtype == d_x.dtype == d_kernel.dtype == jnp.float32
  np.testing.assert_allclose(y, _bf16(x) @ _bf16(kernel), rtol=1e-6)
  np.testing.assert_allclose(d_x, _bf16(g) @ _bf16(kernel).T, rtol=1e-6)
  np.testing.assert_allclose(d_kernel, _bf16(x).reshape(-1, 5).T @ _bf16(g).reshape(-1, 4),
                             rtol=1e-6)
  assert not np.allclose(y, x @ kernel, rtol=1e-6)  # the rounding is there
  rows = layers.LowPrecision(jnp.asarray(kernel), "bfloat16")[1:3]  # a row slice stays wrapped
  np.testing.assert_allclose(layers.matmul(x[..., 1:3], rows),
                             _bf16(x[..., 1:3]) @ _bf16(kernel[1:3]), rtol=1e-6)


def test_in_precision_wraps_kernels_once_and_float32_leaves_params_alone():
  kernel = jnp.ones((3, 2))
  params = {"cell": {"input": {"kernel": kernel, "bias": jnp.zeros(2)}},
            "attention": {"W": {"kernel": kernel}}, "embed": {"embedding": kernel}}
  assert layers.in_precision(params, "float32") is params
  wrapped = layers.in_precision(params, "bfloat16", skip=("attention",))
  assert wrapped["cell"]["input"]["kernel"] == layers.LowPrecision(kernel, "bfloat16")
  assert wrapped["attention"]["W"]["kernel"] is kernel  # skipped
  assert wrapped["embed"]["embedding"] is kernel  # gathered, not multiplied
  again = layers.in_precision(wrapped, "bfloat16", skip=("attention",))
  assert again["cell"]["input"]["kernel"].kernel is kernel  # not wrapped twice
  rounded = layers.in_precision(params, "bfloat16", rounded=True)
  assert rounded["cell"]["input"]["kernel"].kernel.dtype == jnp.bfloat16
