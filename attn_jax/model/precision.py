"""The operand precision of the kernels' products (ModelConfig.matmul_dtype).

`in_precision` wraps the kernels of a params pytree as LowPrecision, and `matmul` runs
a product with a wrapped kernel with both operands rounded to bfloat16 and float32
accumulation, in the forward pass and in both products of its gradient (a custom
VJP). Parameters, their gradients and the optimiser state stay float32, and so does
everything but those products: nonlinearities, layer norm, attention, softmax and the
loss around the output layer's product (output_loss rounds that product itself).
A float32 kernel is a plain array and `matmul` is `x @ kernel`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from attn_jax import config as config_lib

MATMUL_DTYPES = config_lib.MATMUL_DTYPES


@functools.partial(jax.tree_util.register_dataclass, data_fields=["kernel"],
                   meta_fields=["dtype"])
@dataclasses.dataclass(frozen=True, eq=False)
class LowPrecision:
  """A kernel [in, out] whose products run in `dtype` (see `matmul`): float32, or already
  rounded to dtype (in_precision(rounded=True))."""
  kernel: jax.Array
  dtype: str

  def __getitem__(self, rows) -> "LowPrecision":
    """Rows of the kernel, still wrapped (cells.project_input_rows)."""
    return LowPrecision(self.kernel[rows], self.dtype)

  @property
  def shape(self) -> tuple[int, ...]:
    return self.kernel.shape


def wrapped(kernel: jax.Array, dtype: str, rounded: bool = False) -> LowPrecision:
  """kernel [in, out] as LowPrecision in dtype; rounded: stored rounded already."""
  return LowPrecision(kernel.astype(dtype) if rounded else kernel, dtype)


def product(a: jax.Array, b: jax.Array, dtype: str, spec: str | None = None) -> jax.Array:
  """a @ b (or einsum(spec, a, b)) accumulated in float32, the operands rounded to dtype
  first (unchanged for float32): the one product every rounded matmul runs."""
  if dtype != "float32":
    a, b = a.astype(dtype), b.astype(dtype)
  if spec is None:
    return jnp.matmul(a, b, preferred_element_type=jnp.float32)
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision_matmul(x: jax.Array, kernel: jax.Array, dtype: str) -> jax.Array:
  """x [..., in] @ kernel [in, out] -> float32 [..., out], operands rounded to dtype."""
  return product(x, kernel, dtype)


def _low_precision_fwd(x, kernel, dtype):
  """The product and the rounded operands, x [..., in] and kernel [in, out], for the VJP."""
  x_low, kernel_low = x.astype(dtype), kernel.astype(dtype)
  return product(x_low, kernel_low, dtype), (x_low, kernel_low)  # [..., out]


def _low_precision_bwd(dtype, saved, g):
  """dx = g W^T and dW = x^T g, operands in dtype, accumulated (and returned) in float32."""
  x_low, kernel_low = saved
  g_low = g.astype(dtype)  # [..., out]
  d_x = product(g_low, kernel_low.T, dtype)  # [..., in]
  rows_x = x_low.reshape(-1, x_low.shape[-1])  # [rows, in]
  rows_g = g_low.reshape(-1, g_low.shape[-1])  # [rows, out]
  return d_x, product(rows_x.T, rows_g, dtype)  # [..., in], [in, out]


_low_precision_matmul.defvjp(_low_precision_fwd, _low_precision_bwd)


def matmul(x: jax.Array, kernel: jax.Array | LowPrecision) -> jax.Array:
  """x [..., in] @ kernel [in, out] -> [..., out]; in low precision for a LowPrecision kernel."""
  if isinstance(kernel, LowPrecision):
    return _low_precision_matmul(x, kernel.kernel, kernel.dtype)
  return x @ kernel


def in_precision(params: dict, dtype: str, skip: tuple[str, ...] = (),
                 rounded: bool = False) -> dict:
  """params with every "kernel" leaf wrapped as LowPrecision(kernel, dtype), except under
  the keys in `skip`; unchanged for "float32". Differentiable: gradients reach the float32
  kernels, and a product rounds its kernel where it runs. rounded: store the kernels
  rounded to dtype already, for a search (no gradients) that reuses them every step."""
  if dtype == "float32":
    return params

  def wrap(tree):
    if not isinstance(tree, dict):
      return tree
    return {k: (wrapped(v, dtype, rounded) if k == "kernel" and not isinstance(v, LowPrecision)
                else v if k in skip else wrap(v)) for k, v in tree.items()}
  return wrap(params)
