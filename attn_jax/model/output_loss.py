"""The output layer and its cross-entropy, a few target positions at a time.

softmax(W_o v_t + b_o) (Luong et al. 2015, eq. 6) over a vocabulary of V words
makes the largest arrays of a training step: logits [batch, tgt_len, V], their
softmax and its gradient. `sums` never holds them whole. It runs over chunks of
`chunk_rows` (batch x time) positions in a `lax.scan`; under differentiation the
same pass also forms the gradient of each chunk, since for a summed loss it is
known in closed form,

  d loss / d z = mask * (softmax(z) - (1 - eps) onehot(y) - eps / V),

z = W_o v + b_o, eps the label smoothing; then dW_o += v^T dz, db_o += sum dz,
dv = dz W_o^T. So the backward pass only scales the saved gradients by the
incoming cotangent: the same three matmuls as plain autodiff, no logits kept
between the passes, and every array a chunk touches small enough for the
allocator to reuse (on CPU a fresh allocation of tens of MB costs its page
faults on every step).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from attn_jax import config as config_lib
from attn_jax.model import precision
from attn_jax.model.selection import argmax

DEFAULT_CHUNK_ROWS = config_lib.LOSS_CHUNK_ROWS  # 256 x 8,000 logits: 8 MB


def chunk_steps(batch: int, chunk_rows: int, tgt_len: int) -> int:
  """Target positions per chunk: chunk_rows // batch (at least 1); 0 rows: all of them."""
  if chunk_rows <= 0:
    return tgt_len
  return max(1, min(tgt_len, chunk_rows // batch))


def _chunked(x: jax.Array, steps: int) -> jax.Array:
  """[batch, tgt_len, ...] -> [chunks, batch, steps, ...], zero-padded in time."""
  batch, length = x.shape[:2]
  pad = -length % steps
  x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
  x = x.reshape((batch, (length + pad) // steps, steps) + x.shape[2:])  # [batch, chunks, steps, ...]
  return jnp.swapaxes(x, 0, 1)  # [chunks, batch, steps, ...]


def _chunked_inputs(v, targets, mask, steps):
  """The scan's inputs: v, targets and mask, each _chunked."""
  return _chunked(v, steps), _chunked(targets, steps), _chunked(mask, steps)


def _chunk_sums(kernel, bias, v, targets, mask, label_smoothing, dtype):
  """Logits z [batch, steps, V], log-sum-exp [batch, steps], summed loss and hits."""
  z = precision.product(v, kernel, dtype) + bias  # [batch, steps, V]
  lse = jax.nn.logsumexp(z, axis=-1)  # [batch, steps]
  z_target = jnp.take_along_axis(z, targets[..., None], axis=-1)[..., 0]  # [batch, steps]
  # -log p(y) = lse - z_y; the cross-entropy with the uniform distribution = lse - mean(z).
  nll = lse - z_target
  if label_smoothing:
    nll = (1.0 - label_smoothing) * nll + label_smoothing * (lse - jnp.mean(z, axis=-1))
  loss = jnp.sum(jnp.where(mask, nll, 0.0))
  hits = jnp.sum((argmax(z) == targets) & mask)
  return z, lse, loss, hits


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def sums(kernel: jax.Array, bias: jax.Array, v: jax.Array, targets: jax.Array,
         mask: jax.Array, label_smoothing: float = 0.0,
         chunk_rows: int = DEFAULT_CHUNK_ROWS, matmul_dtype: str = "float32"
         ) -> tuple[jax.Array, jax.Array]:
  """Summed (label-smoothed) cross-entropy and argmax hits of softmax(v W + b).

  Args:
    kernel: W_o [hidden, V] (E^T with tied embeddings).
    bias: b_o [V].
    v: output vectors [batch, tgt_len, hidden].
    targets: int [batch, tgt_len].
    mask: bool [batch, tgt_len], True at the real positions.
    label_smoothing: eps; the target distribution is (1 - eps) onehot + eps / V.
    chunk_rows: batch x time positions per chunk (chunk_steps); 0: one chunk.
    matmul_dtype: the operands of the three products (v W, v^T dz, dz W^T) are rounded to
      it; they accumulate in float32 (precision.matmul).
  Returns:
    (loss sum over the real positions, float32 []; hits, int32 []): the values of
    metrics.cross_entropy_sum and sum(argmax == target) on the whole logits.
  """
  steps = chunk_steps(v.shape[0], chunk_rows, v.shape[1])

  def body(acc, xs):
    _, _, loss, hits = _chunk_sums(kernel, bias, *xs, label_smoothing, matmul_dtype)
    return (acc[0] + loss, acc[1] + hits), None

  init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
  (loss, hits), _ = jax.lax.scan(body, init, _chunked_inputs(v, targets, mask, steps))
  return loss, hits


def _sums_fwd(kernel, bias, v, targets, mask, label_smoothing, chunk_rows, matmul_dtype):
  batch, length, _ = v.shape
  vocab = kernel.shape[1]
  steps = chunk_steps(batch, chunk_rows, length)
  kernel_in = kernel if matmul_dtype == "float32" else kernel.astype(matmul_dtype)  # once

  def body(acc, xs):
    loss_sum, hits_sum, d_kernel, d_bias = acc
    v_c, targets_c, mask_c = xs  # [batch, steps, hidden], [batch, steps], [batch, steps]
    z, lse, loss, hits = _chunk_sums(kernel_in, bias, v_c, targets_c, mask_c, label_smoothing,
                                     matmul_dtype)
    dz = (jnp.exp(z - lse[..., None]) - label_smoothing / vocab
          - (1.0 - label_smoothing) * jax.nn.one_hot(targets_c, vocab, dtype=z.dtype))
    dz = jnp.where(mask_c[..., None], dz, 0.0)  # [batch, steps, V]
    d_kernel = d_kernel + precision.product(v_c, dz, matmul_dtype, "bsh,bsv->hv")
    d_bias = d_bias + jnp.sum(dz, axis=(0, 1))
    d_v = precision.product(dz, kernel_in.T, matmul_dtype)  # [batch, steps, hidden]
    return (loss_sum + loss, hits_sum + hits, d_kernel, d_bias), d_v

  init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros_like(kernel),
          jnp.zeros_like(bias))
  (loss, hits, d_kernel, d_bias), d_v = jax.lax.scan(
      body, init, _chunked_inputs(v, targets, mask, steps))
  d_v = jnp.swapaxes(d_v, 0, 1).reshape((batch, -1, v.shape[2]))[:, :length]  # [batch, tgt_len, hidden]
  return (loss, hits), (d_kernel, d_bias, d_v)


def _sums_bwd(label_smoothing, chunk_rows, matmul_dtype, saved, cotangents):
  del label_smoothing, chunk_rows, matmul_dtype
  d_kernel, d_bias, d_v = saved
  g = cotangents[0]  # of the loss sum; hits are integers
  return g * d_kernel, g * d_bias, g * d_v, None, None


sums.defvjp(_sums_fwd, _sums_bwd)
