"""Dense and embedding parameters: Flax initialisers, plain-JAX application.

Parameters are plain dicts (``{"kernel": [in, out], "bias": [out]}``) so that the
rest of the library stays pure functions over one params pytree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from attn_jax.model.precision import matmul

Params = dict


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
