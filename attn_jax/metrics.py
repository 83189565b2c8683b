"""Losses and evaluation metrics as sums and counts (divided on the host)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def target_mask(tgt_len: jax.Array, width: int) -> jax.Array:
  """bool [batch, width]: True at real target positions (EOS included)."""
  return jnp.arange(width)[None, :] < tgt_len[:, None]


def cross_entropy_sum(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                      label_smoothing: float = 0.0) -> jax.Array:
  """Summed masked cross-entropy, optionally against a smoothed target distribution.

  Args:
    logits: [batch, tgt_len, vocab]; targets: int [batch, tgt_len]; mask: bool [batch, tgt_len].
  Returns:
    scalar sum over the real positions.
  """
  log_p = jax.nn.log_softmax(logits)  # [batch, tgt_len, vocab]
  nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]  # [batch, tgt_len]
  if label_smoothing:
    smooth = -jnp.mean(log_p, axis=-1)  # cross-entropy with the uniform distribution
    nll = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  return jnp.sum(jnp.where(mask, nll, 0.0))


def attention_sums(weights: jax.Array, gold: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Alignment hits and entropy of attention weights [batch, tgt_len, src_len].

  A hit is argmax_j a_tj == gold_t at a real target position with a gold alignment.
  Entropy is -sum_j a_tj log a_tj in nats.
  """
  has_gold = mask & (gold >= 0)
  hits = (jnp.argmax(weights, axis=-1) == gold) & has_gold
  entropy = -jnp.sum(jnp.where(weights > 0, weights * jnp.log(weights), 0.0), axis=-1)
  return {"align_hits": jnp.sum(hits), "align_count": jnp.sum(has_gold),
          "entropy_sum": jnp.sum(jnp.where(mask, entropy, 0.0))}


def sequence_sums(pred: np.ndarray, pred_len: np.ndarray, tgt_out: np.ndarray,
                  tgt_len: np.ndarray) -> dict[str, int]:
  """Exact-sequence and position-wise token matches of decoded outputs (host side).

  Args:
    pred: int [batch, max_len] decoded tokens (EOS included); pred_len: [batch].
    tgt_out: int [batch, tgt_len] references; tgt_len: [batch], 0 for filler rows.
  """
  width = max(pred.shape[1], tgt_out.shape[1])
  pad = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=-1)
  pred, tgt_out = pad(pred), pad(tgt_out)
  ref_mask = np.arange(width)[None, :] < tgt_len[:, None]
  token_hits = (pred == tgt_out) & ref_mask
  exact = (pred_len == tgt_len) & (token_hits.sum(axis=1) == tgt_len)
  real = tgt_len > 0
  return {"seq_hits": int(np.sum(exact & real)),
          "seq_count": int(np.sum(real)),
          "greedy_token_hits": int(np.sum((pred == tgt_out) & ref_mask)),
          "greedy_token_count": int(np.sum(ref_mask))}


def summarize(sums: dict[str, float]) -> dict[str, float]:
  """Turns accumulated sums and counts into rates (host side)."""
  out = {}
  div = lambda a, b: float(sums[a]) / float(sums[b]) if sums.get(b) else float("nan")
  if "loss_sum" in sums:
    out["loss"] = div("loss_sum", "token_count")
    out["perplexity"] = float(np.exp(min(out["loss"], 50.0)))
  if "token_hits" in sums:
    out["token_accuracy"] = div("token_hits", "token_count")
  if "align_hits" in sums:
    out["alignment_accuracy"] = div("align_hits", "align_count")
    out["attention_entropy"] = div("entropy_sum", "token_count")
  if "seq_hits" in sums:
    out["sequence_accuracy"] = div("seq_hits", "seq_count")
    out["greedy_token_accuracy"] = div("greedy_token_hits", "greedy_token_count")
  return out
