"""The encoder-decoder as a whole: parameter init and the teacher-forced forward pass."""

from __future__ import annotations

import jax
import numpy as np

from attn_jax.batch import Batch
from attn_jax.config import BOS_ID, ModelConfig
from attn_jax.model import decoder, encoder, precision


def init(key: jax.Array, config: ModelConfig) -> dict:
  """{"encoder": ..., "decoder": ...}: the whole params pytree."""
  k_enc, k_dec = jax.random.split(key)
  return {"encoder": encoder.init(k_enc, config), "decoder": decoder.init(k_dec, config)}


def dropout_keys(dropout_key: jax.Array | None) -> tuple[jax.Array | None, jax.Array | None]:
  """(encoder key, decoder key) of a step's dropout key; (None, None) for evaluation."""
  if dropout_key is None:
    return None, None
  k_enc, k_dec = jax.random.split(dropout_key)
  return k_enc, k_dec


# Subtrees whose kernels stay float32: attention runs per example under vmap, where a
# custom-VJP product with a shared kernel would form one kernel gradient per example.
FLOAT32_SUBTREES = ("attention",)


def in_precision(params: dict, config: ModelConfig, rounded: bool = False) -> dict:
  """params whose kernels multiply with config.matmul_dtype operands (precision.in_precision;
  unchanged for float32), the tied output layer E^T included, FLOAT32_SUBTREES excepted.
  Idempotent. rounded: the kernels stored rounded (for searches, which take no gradients)."""
  if config.matmul_dtype == "float32":
    return params
  dtype = config.matmul_dtype
  params = precision.in_precision(params, dtype, skip=FLOAT32_SUBTREES, rounded=rounded)
  dec = params["decoder"]
  if "kernel" not in dec["output"]:  # tied: W_o = E^T, the embedding itself stays float32
    kernel = dec["embed"]["embedding"].T  # [hidden, tgt_vocab]
    output = {**dec["output"], "kernel": precision.wrapped(kernel, dtype, rounded)}
    params = {**params, "decoder": {**dec, "output": output}}
  return params


def forward_outputs(params: dict, batch: Batch, config: ModelConfig,
                    dropout_key: jax.Array | None = None, remat: bool = False,
                    heads: bool = False) -> tuple[jax.Array, jax.Array]:
  """Teacher-forced pass up to the output layer (whose loss output_loss.sums computes).

  remat: the encoder's and decoder's time steps recompute their activations in the
  backward pass instead of keeping them (less memory, more time).
  heads: a multi-head variant's weights per head, [batch, tgt_len, heads, src_len].

  Returns:
    output vectors v_t [batch, tgt_len, hidden] and attention weights [batch, tgt_len, src_len].
  """
  params = in_precision(params, config)
  k_enc, k_dec = dropout_keys(dropout_key)
  enc = encoder.encode(params["encoder"], batch.src, batch.src_len, config, k_enc, remat)
  return decoder.teacher_forced_outputs(params["decoder"], enc, batch.tgt_in, config, k_dec,
                                        remat, heads)


def forward(params: dict, batch: Batch, config: ModelConfig,
            dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Teacher-forced pass.

  Returns:
    logits [batch, tgt_len, tgt_vocab] and attention weights [batch, tgt_len, src_len].
  """
  params = in_precision(params, config)
  outs, weights = forward_outputs(params, batch, config, dropout_key)
  return decoder.logits(params["decoder"], outs), weights


def head_weights(params: dict, src: np.ndarray, output: np.ndarray, config: ModelConfig
                 ) -> np.ndarray:
  """Every head's weights [out_len, heads, src_len] of a multi-head variant along one
  decoded sentence, teacher forced on its output (a stateless variant attends as the search
  did, so their mean is the search's weights). src: ids with EOS; output: the decoded ids."""
  tgt_in = np.concatenate([[BOS_ID], output[:-1]]).astype(np.int32)[None]  # [1, out_len]
  batch = Batch(src=np.asarray(src, np.int32)[None], src_len=np.array([len(src)], np.int32),
                tgt_in=tgt_in, tgt_out=np.zeros_like(tgt_in),
                tgt_len=np.array([tgt_in.shape[1]], np.int32), align=np.full_like(tgt_in, -1))
  _, weights = jax.jit(lambda p, b: forward_outputs(p, b, config, heads=True))(params, batch)
  return np.asarray(weights[0])


def count_params(params: dict) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
