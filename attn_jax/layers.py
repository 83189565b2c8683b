"""Dense and embedding parameters: Flax initialisers, plain-JAX application.

Parameters are plain dicts (``{"kernel": [in, out], "bias": [out]}``) so that the
rest of the library stays pure functions over one params pytree.

Low-precision matmuls (ModelConfig.matmul_dtype = "bfloat16"): `in_precision` wraps
the kernels of a params pytree as LowPrecision, and `matmul` runs a product with a
wrapped kernel with both operands rounded to bfloat16 and float32 accumulation, in
the forward pass and in both products of its gradient. Parameters, their gradients
and optimiser state stay float32, and so does everything but those products
(nonlinearities, layer norm, attention, softmax, loss).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

Params = dict
MATMUL_DTYPES = ("float32", "bfloat16")


@functools.partial(jax.tree_util.register_dataclass, data_fields=["kernel"],
                   meta_fields=["dtype"])
@dataclasses.dataclass(frozen=True)
class LowPrecision:
  """A float32 kernel [in, out] whose products run in `dtype` (see `matmul`)."""
  kernel: jax.Array
  dtype: str

  def __getitem__(self, rows) -> "LowPrecision":
    """Rows of the kernel, still wrapped (cells.project_input_rows)."""
    return LowPrecision(self.kernel[rows], self.dtype)

  @property
  def shape(self) -> tuple[int, ...]:
    return self.kernel.shape


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision_matmul(x: jax.Array, kernel: jax.Array, dtype: str) -> jax.Array:
  """x [..., in] @ kernel [in, out] -> float32 [..., out], operands rounded to dtype."""
  return jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)


def _low_precision_fwd(x, kernel, dtype):
  x_low, kernel_low = x.astype(dtype), kernel.astype(dtype)
  y = jnp.matmul(x_low, kernel_low, preferred_element_type=jnp.float32)  # [..., out]
  return y, (x_low, kernel_low)


def _low_precision_bwd(dtype, saved, g):
  """dx = g W^T and dW = x^T g, operands in dtype, accumulated (and returned) in float32."""
  x_low, kernel_low = saved
  g_low = g.astype(dtype)  # [..., out]
  d_x = jnp.matmul(g_low, kernel_low.T, preferred_element_type=jnp.float32)  # [..., in]
  rows_x = x_low.reshape(-1, x_low.shape[-1])  # [rows, in]
  rows_g = g_low.reshape(-1, g_low.shape[-1])  # [rows, out]
  d_kernel = jnp.matmul(rows_x.T, rows_g, preferred_element_type=jnp.float32)  # [in, out]
  return d_x, d_kernel


_low_precision_matmul.defvjp(_low_precision_fwd, _low_precision_bwd)


def matmul(x: jax.Array, kernel: jax.Array | LowPrecision) -> jax.Array:
  """x [..., in] @ kernel [in, out] -> [..., out]; in low precision for a LowPrecision kernel."""
  if isinstance(kernel, LowPrecision):
    return _low_precision_matmul(x, kernel.kernel, kernel.dtype)
  return x @ kernel


def in_precision(params: Params, dtype: str, skip: tuple[str, ...] = (),
                 rounded: bool = False) -> Params:
  """params with every "kernel" leaf wrapped as LowPrecision(kernel, dtype), except under
  the keys in `skip`; unchanged for "float32". Differentiable: gradients reach the float32
  kernels, and a product rounds its kernel where it runs. rounded: store the kernels
  rounded to dtype already, for a search (no gradients) that reuses them every step."""
  if dtype == "float32":
    return params

  def wrap(tree):
    if not isinstance(tree, dict):
      return tree
    return {k: (LowPrecision(v.astype(dtype) if rounded else v, dtype)
                if k == "kernel" and not isinstance(v, LowPrecision)
                else v if k in skip else wrap(v)) for k, v in tree.items()}
  return wrap(params)


def dense_init(key: jax.Array, in_size: int, out_size: int, *, bias: bool = True,
               kernel_init=nn.initializers.lecun_normal()) -> Params:
  """Parameters of y = x W (+ b)."""
  params = {"kernel": kernel_init(key, (in_size, out_size), jnp.float32)}
  if bias:
    params["bias"] = jnp.zeros((out_size,), jnp.float32)
  return params


def bias_init(size: int) -> Params:
  """{"bias": zeros [size]}: an output layer whose kernel is shared with an embedding."""
  return {"bias": jnp.zeros((size,), jnp.float32)}


def dense(params: Params, x: jax.Array) -> jax.Array:
  """x [..., in] -> [..., out]."""
  y = matmul(x, params["kernel"])
  if "bias" in params:
    y = y + params["bias"]
  return y


def layer_norm_init(size: int) -> Params:
  """{"scale": ones [size], "bias": zeros [size]} (gain and bias of Ba et al. 2016)."""
  return {"scale": jnp.ones((size,), jnp.float32), "bias": jnp.zeros((size,), jnp.float32)}


def layer_norm(params: Params, x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """(x - mean) / sqrt(var + eps) * scale + bias over the last axis of x [..., size]."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * params["scale"] + params["bias"]


def embed_init(key: jax.Array, vocab_size: int, size: int) -> Params:
  """Embedding table [vocab, size], N(0, 1/size) so rows start at unit-ish norm."""
  init = nn.initializers.normal(stddev=size ** -0.5)
  return {"embedding": init(key, (vocab_size, size), jnp.float32)}


def embed(params: Params, ids: jax.Array) -> jax.Array:
  """ids [...] int -> [..., size]."""
  return jnp.take(params["embedding"], ids, axis=0)


def dropout(key: jax.Array | None, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout; identity when `key` is None (evaluation) or rate is 0."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)
