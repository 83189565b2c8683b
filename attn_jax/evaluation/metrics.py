"""Losses and evaluation metrics as sums and counts (divided on the host)."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

from attn_jax.model.selection import argmax


def target_mask(tgt_len: jax.Array, width: int) -> jax.Array:
  """bool [batch, width]: True at real target positions (EOS included)."""
  return jnp.arange(width)[None, :] < tgt_len[:, None]


def cross_entropy_sum(logits: jax.Array, targets: jax.Array, mask: jax.Array,
                      label_smoothing: float = 0.0) -> jax.Array:
  """Summed masked cross-entropy, optionally against a smoothed target distribution, on
  whole logits: the definition output_loss.sums (which training and evaluation use)
  computes in chunks.

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


def coverage_overlap(weights: jax.Array) -> jax.Array:
  """sum_j min(a_tj, cov_tj) [batch, tgt_len] of weights [batch, tgt_len, src_len], with
  cov_t = sum_{t' < t} a_t' (See et al. 2017, eq. 10 and 12): the weight a step puts
  where earlier steps already attended; its sum over t is the coverage loss."""
  coverage = jnp.cumsum(weights, axis=1) - weights  # [batch, tgt_len, src_len]
  return jnp.sum(jnp.minimum(weights, coverage), axis=-1)


def attention_sums(weights: jax.Array, gold: jax.Array, mask: jax.Array,
                   src_len: jax.Array | None = None) -> dict[str, jax.Array]:
  """Alignment hits, entropy and exact zeros of attention weights [batch, tgt_len, src_len].

  A hit is argmax_j a_tj == gold_t at a real target position with a gold alignment.
  Entropy is -sum_j a_tj log a_tj in nats; coverage_sum adds up coverage_overlap. With
  src_len [batch] (real source lengths), also the weights that are exactly 0 among the
  real (target, source) pairs (sparse normalisers give them; softmax practically never).
  """
  has_gold = mask & (gold >= 0)
  hits = (argmax(weights) == gold) & has_gold
  entropy = -jnp.sum(jnp.where(weights > 0, weights * jnp.log(weights), 0.0), axis=-1)
  sums = {"align_hits": jnp.sum(hits), "align_count": jnp.sum(has_gold),
          "entropy_sum": jnp.sum(jnp.where(mask, entropy, 0.0)),
          "coverage_sum": jnp.sum(jnp.where(mask, coverage_overlap(weights), 0.0))}
  if src_len is not None:
    real_src = jnp.arange(weights.shape[-1]) < src_len[:, None]  # [batch, src_len]
    real = mask[:, :, None] & real_src[:, None, :]  # [batch, tgt_len, src_len]
    sums["zero_weights"] = jnp.sum(real & (weights == 0))
    sums["weight_count"] = jnp.sum(real)
  return sums


def head_sums(weights: jax.Array, gold: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Each head's alignment hits and entropy sum, [heads] each, from a multi-head variant's
  weights [batch, tgt_len, heads, src_len] (attention_sums per head)."""
  per_head = jax.vmap(lambda w: attention_sums(w, gold, mask), in_axes=2)(weights)
  return {"head_align_hits": per_head["align_hits"], "head_entropy_sum": per_head["entropy_sum"]}


def repeated_ngrams(output: np.ndarray, reference: np.ndarray, n: int = 2) -> tuple[int, int]:
  """Over-translation (Tu et al. 2016) of one decoded sentence (host side): (the n-grams it
  repeats beyond what the reference holds, sum_g max(0, c_out(g) - max(1, c_ref(g))), and
  its n-gram count). output, reference: int ids, EOS excluded."""
  grams = lambda ids: collections.Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1))
  out, ref = grams(list(output)), grams(list(reference))
  return sum(max(0, c - max(1, ref[g])) for g, c in out.items()), sum(out.values())


def unattended_sources(weights: np.ndarray) -> tuple[int, int]:
  """Under-translation (Tu et al. 2016) of one decoded sentence (host side): (the source
  tokens that no output step attends to most, and the source tokens), from its weights
  [out_len, src_len] (EOS columns excluded by the caller); steps with no weight at all
  (monotonic attention past the end) attend to nothing."""
  attending = weights[weights.sum(-1) > 0]  # [steps, src_len]
  seen = np.zeros(weights.shape[1], bool)
  seen[np.argmax(attending, axis=-1)] = True
  return int(np.sum(~seen)), weights.shape[1]


def _pad_to(x: np.ndarray, width: int) -> np.ndarray:
  return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=-1)


def exact_matches(pred: np.ndarray, pred_len: np.ndarray, tgt_out: np.ndarray,
                  tgt_len: np.ndarray) -> np.ndarray:
  """bool [batch]: the decoded sequence equals the reference, EOS and length included."""
  width = max(pred.shape[1], tgt_out.shape[1])
  pred, tgt_out = _pad_to(pred, width), _pad_to(tgt_out, width)
  ref_mask = np.arange(width)[None, :] < tgt_len[:, None]
  hits = np.sum((pred == tgt_out) & ref_mask, axis=1)
  return (pred_len == tgt_len) & (hits == tgt_len) & (tgt_len > 0)


def sequence_sums(pred: np.ndarray, pred_len: np.ndarray, tgt_out: np.ndarray,
                  tgt_len: np.ndarray) -> dict[str, int]:
  """Exact-sequence and position-wise token matches of decoded outputs (host side).

  Args:
    pred: int [batch, max_len] decoded tokens (EOS included); pred_len: [batch].
    tgt_out: int [batch, tgt_len] references; tgt_len: [batch], 0 for filler rows.
  """
  width = max(pred.shape[1], tgt_out.shape[1])
  ref_mask = np.arange(width)[None, :] < tgt_len[:, None]
  token_hits = (_pad_to(pred, width) == _pad_to(tgt_out, width)) & ref_mask
  return {"seq_hits": int(np.sum(exact_matches(pred, pred_len, tgt_out, tgt_len))),
          "seq_count": int(np.sum(tgt_len > 0)),
          "greedy_token_hits": int(np.sum(token_hits)),
          "greedy_token_count": int(np.sum(ref_mask))}


def length_groups(lengths, edges: tuple[int, ...]) -> dict[str, list[int]]:
  """Indices grouped into length buckets [1, e_0], (e_0, e_1], ..., (e_last, inf).

  Returns {"1-10": [i, ...], "11-20": ..., "51+": ...} in ascending order, empty
  buckets left out.
  """
  bounds = list(edges) + [None]
  starts = [1] + [e + 1 for e in edges]
  labels = [f"{lo}-{e}" if e is not None else f"{lo}+" for lo, e in zip(starts, bounds)]
  groups: dict[str, list[int]] = {label: [] for label in labels}
  for i, n in enumerate(lengths):
    j = next(j for j, e in enumerate(bounds) if e is None or n <= e)
    groups[labels[j]].append(i)
  return {label: idx for label, idx in groups.items() if idx}


def by_length(lengths: np.ndarray, hits: np.ndarray, width: int = 5) -> dict[str, list[int]]:
  """{"1-5": [hits, count], "6-10": ...} in ascending order: hits bucketed by source
  length (EOS excluded) in buckets `width` wide."""
  edges = tuple(range(width, int(max(lengths, default=0)) + width, width))
  return {label: [int(np.sum(hits[idx])), len(idx)]
          for label, idx in length_groups(lengths, edges).items()}


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
  if "coverage_sum" in sums:
    out["coverage_overlap"] = div("coverage_sum", "token_count")
  if "head_align_hits" in sums and sums.get("align_count"):
    accuracy = np.asarray(sums["head_align_hits"], np.float64) / float(sums["align_count"])
    best = int(np.argmax(accuracy))  # the head whose argmax is most often the gold position
    out["best_head"] = float(best)
    out["best_head_alignment_accuracy"] = float(accuracy[best])
    out["best_head_entropy"] = float(sums["head_entropy_sum"][best]) / float(sums["token_count"])
  if "zero_weights" in sums:
    out["zero_weight_share"] = div("zero_weights", "weight_count")
  if "seq_hits" in sums:
    out["sequence_accuracy"] = div("seq_hits", "seq_count")
    out["greedy_token_accuracy"] = div("greedy_token_hits", "greedy_token_count")
  return out
