"""bfloat16 products: the rounding of both operands, forward and backward; kernels wrapped."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from attn_jax.model import precision


def _bf16(x) -> np.ndarray:
  """x rounded to bfloat16 (to nearest, ties to even), as float64."""
  return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_low_precision_products_round_their_operands_and_accumulate_in_float32():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 5)).astype(np.float32)
  kernel = rng.normal(size=(5, 4)).astype(np.float32)
  g = rng.normal(size=(2, 3, 4)).astype(np.float32)
  product = lambda x, k: precision.matmul(x, precision.LowPrecision(k, "bfloat16"))
  y, vjp = jax.vjp(product, x, kernel)
  d_x, d_kernel = vjp(jnp.asarray(g))
  assert y.dtype == d_x.dtype == d_kernel.dtype == jnp.float32
  np.testing.assert_allclose(y, _bf16(x) @ _bf16(kernel), rtol=1e-6)
  np.testing.assert_allclose(d_x, _bf16(g) @ _bf16(kernel).T, rtol=1e-6)
  np.testing.assert_allclose(d_kernel, _bf16(x).reshape(-1, 5).T @ _bf16(g).reshape(-1, 4),
                             rtol=1e-6)
  assert not np.allclose(y, x @ kernel, rtol=1e-6)  # the rounding is there
  rows = precision.LowPrecision(jnp.asarray(kernel), "bfloat16")[1:3]  # a row slice stays wrapped
  np.testing.assert_allclose(precision.matmul(x[..., 1:3], rows),
                             _bf16(x[..., 1:3]) @ _bf16(kernel[1:3]), rtol=1e-6)


def test_in_precision_wraps_kernels_once_and_float32_leaves_params_alone():
  kernel = jnp.ones((3, 2))
  params = {"cell": {"input": {"kernel": kernel, "bias": jnp.zeros(2)}},
            "attention": {"W": {"kernel": kernel}}, "embed": {"embedding": kernel}}
  assert precision.in_precision(params, "float32") is params
  wrapped = precision.in_precision(params, "bfloat16", skip=("attention",))
  cell_kernel = wrapped["cell"]["input"]["kernel"]
  assert isinstance(cell_kernel, precision.LowPrecision) and cell_kernel.kernel is kernel
  assert cell_kernel.dtype == "bfloat16"
  assert wrapped["attention"]["W"]["kernel"] is kernel  # skipped
  assert wrapped["embed"]["embedding"] is kernel  # gathered, not multiplied
  again = precision.in_precision(wrapped, "bfloat16", skip=("attention",))
  assert again["cell"]["input"]["kernel"].kernel is kernel  # not wrapped twice
  rounded = precision.in_precision(params, "bfloat16", rounded=True)
  assert rounded["cell"]["input"]["kernel"].kernel.dtype == jnp.bfloat16
