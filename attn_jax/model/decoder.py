"""The attentional decoder: one step, and the teacher-forced `lax.scan` over it.

Two independent switches (ModelConfig):

* ``query="previous"`` (Bahdanau et al. 2014): attend with h_{t-1}; the cell reads
  [E y_{t-1}; c_t]; the output layer reads the deep-output vector
  t_t = tanh(W_r [h_t; c_t; E y_{t-1}]) (Bahdanau eq. A.1.2 with tanh for maxout).
* ``query="current"`` (Luong et al. 2015): the cell reads E y_{t-1}; attend with h_t;
  the attentional vector h~_t = tanh(W_c [c_t; h_t]) (Luong eq. 5) feeds the output layer.
* ``input_feeding``: the previous step's h~_{t-1} (current) or c_{t-1} (previous) is
  appended to the cell's input (Luong section 3.3).

p(y_t | y_<t, x) = softmax(W_o v_t + b_o) with v_t = t_t or h~_t (Luong eq. 6).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.config import ModelConfig
from attn_jax.model import attention, cells, layers, precision
from attn_jax.model.encoder import EncoderOutput


class DecoderCarry(NamedTuple):
  state: cells.CellState  # h, c: float32 [batch, hidden]
  feed: jax.Array  # float32 [batch, feed_size]: h~_{t-1} or c_{t-1}; feed_size 0 without input feeding
  t: jax.Array  # int32 [batch]: index of the output token the next step predicts (local attention)
  attention: Any  # the attention variant's state (attention.initial_state), leaves [batch, ...]:
  # coverage [batch, src_len]; monotonic alignment [batch, src_len] and position [batch];
  # float32 [batch, 0] for a variant without one


class Memory(NamedTuple):
  """What attention reads at every step, computed once per batch."""
  keys: jax.Array  # float32 [batch, src_len or 1, K]: prepared keys (U k, W k, ...)
  values: jax.Array  # float32 [batch, src_len, A]: encoder states
  mask: jax.Array  # bool [batch, src_len]


def feed_size(config: ModelConfig) -> int:
  if not config.input_feeding:
    return 0
  return config.hidden_size if config.query == "current" else config.encoder_output_size


def cell_input_size(config: ModelConfig) -> int:
  context = config.encoder_output_size if config.query == "previous" else 0
  return config.embed_size + context + feed_size(config)


def readout_size(config: ModelConfig) -> int:
  """Input size of W_r [h_t; c_t; E y_{t-1}] (previous) or W_c [c_t; h_t] (current)."""
  extra = config.embed_size if config.query == "previous" else 0
  return config.hidden_size + config.encoder_output_size + extra


def attention_sizes(config: ModelConfig) -> attention.Sizes:
  return attention.Sizes(query=config.hidden_size, key=config.encoder_output_size,
                         attention=config.attention_size, positions=config.location_positions,
                         heads=config.num_heads)


def init(key: jax.Array, config: ModelConfig) -> dict:
  cell = cells.CELLS[config.cell]
  k = jax.random.split(key, 6)
  a, h, e = config.encoder_output_size, config.hidden_size, config.embed_size
  params = {
      "embed": layers.embed_init(k[0], config.tgt_vocab_size, e),
      "cell": cell.init(k[1], cell_input_size(config), h, config.layer_norm),
      "bridge": layers.dense_init(k[2], a, h),
      "attention": attention.VARIANTS[config.attention].init(k[3], attention_sizes(config)),
      "readout": layers.dense_init(k[4], readout_size(config), h),  # W_r or W_c
      "output": (layers.bias_init(config.tgt_vocab_size) if config.tie_embeddings
                 else layers.dense_init(k[5], h, config.tgt_vocab_size)),
  }
  if cell.has_memory:
    params["bridge_c"] = layers.dense_init(jax.random.fold_in(k[2], 1), a, h)
  return params


def initial_carry(params: dict, enc: EncoderOutput, config: ModelConfig) -> DecoderCarry:
  """Bridge: s_0 = tanh(W_s [h->_N; h<-_1] + b) (Bahdanau A.2.2, both directions)."""
  h0 = jnp.tanh(layers.dense(params["bridge"], enc.final.h))  # [batch, hidden]
  c0 = jnp.tanh(layers.dense(params["bridge_c"], enc.final.c)) if "bridge_c" in params else None
  batch = h0.shape[0]
  variant = attention.VARIANTS[config.attention]
  return DecoderCarry(state=cells.CellState(h=h0, c=c0),
                      feed=jnp.zeros((batch, feed_size(config)), jnp.float32),
                      t=jnp.zeros((batch,), jnp.int32),
                      attention=jax.vmap(lambda m: attention.initial_state(variant, m))(enc.mask))


def memory(params: dict, enc: EncoderOutput, config: ModelConfig) -> Memory:
  """Prepares the attention keys once per batch (Joey NMT's trick, made explicit)."""
  prepare, _ = attention.batched(attention.VARIANTS[config.attention])
  keys = prepare(params["attention"], enc.states, enc.final.h)  # [batch, src_len or 1, K]
  return Memory(keys=keys, values=enc.states, mask=enc.mask)


def project_embeddings(params: dict, emb: jax.Array) -> jax.Array:
  """The embedding part of the cell input projection: emb [..., embed] -> [..., gates*hidden]."""
  return (cells.project_input_rows(params["cell"], emb, 0)
          + params["cell"]["input"]["bias"])


def step(params: dict, carry: DecoderCarry, emb: jax.Array, emb_proj: jax.Array,
         mem: Memory, config: ModelConfig, noise: jax.Array | None = None,
         search: bool = False, heads: bool = False
         ) -> tuple[DecoderCarry, jax.Array, jax.Array]:
  """One decoder step for a batch.

  Args:
    params: decoder parameters.
    carry: DecoderCarry from step t-1.
    emb: E y_{t-1} [batch, embed].
    emb_proj: project_embeddings(E y_{t-1}) [batch, gates*hidden].
    mem: Memory.
    config: model options.
    noise: float32 [batch, src_len] for a variant that trains with noise, else None.
    search: attend as searches do (attention.step_fn: hard monotonic attention).
    heads: a multi-head variant's weights per head (attention.step_fn).
  Returns:
    (carry at t, output vector v_t [batch, hidden], attention weights [batch, src_len]
    or, with heads, [batch, heads, src_len]).
  """
  cell = cells.CELLS[config.cell]
  _, batched_attend = attention.batched(attention.VARIANTS[config.attention], config.window,
                                        search, heads)
  if noise is None:
    noise = jnp.zeros(carry.t.shape + (0,), jnp.float32)  # [batch, 0]

  def attend(query):  # -> context [batch, A], weights [batch, src_len], the variant's state
    return batched_attend(params["attention"], query, mem.keys, mem.values, mem.mask, carry.t,
                          carry.attention, noise)

  e, a = config.embed_size, config.encoder_output_size
  x = emb_proj  # [batch, gates*hidden]
  if config.query == "previous":
    context, weights, attention_state = attend(carry.state.h)
    x = x + cells.project_input_rows(params["cell"], context, e)
    if config.input_feeding:
      x = x + cells.project_input_rows(params["cell"], carry.feed, e + a)
    state = cell.step(params["cell"], carry.state, x)
    readout_in = jnp.concatenate([state.h, context, emb], axis=-1)  # [batch, hidden+A+embed]
    out = jnp.tanh(layers.dense(params["readout"], readout_in))  # [batch, hidden]
    feed = context
  else:
    if config.input_feeding:
      x = x + cells.project_input_rows(params["cell"], carry.feed, e)
    state = cell.step(params["cell"], carry.state, x)
    context, weights, attention_state = attend(state.h)
    readout_in = jnp.concatenate([context, state.h], axis=-1)  # [batch, A+hidden]
    out = jnp.tanh(layers.dense(params["readout"], readout_in))  # [batch, hidden]
    feed = out
  if not config.input_feeding:
    feed = carry.feed  # [batch, 0]
  return (DecoderCarry(state=state, feed=feed, t=carry.t + 1, attention=attention_state),
          out, weights)


def output_layer(params: dict) -> tuple[jax.Array | precision.LowPrecision, jax.Array]:
  """(W_o [hidden, tgt_vocab], b_o [tgt_vocab]); with tied embeddings (an output layer
  holding only a bias) W_o is the target embedding's transpose E^T (model.in_precision
  gives it a kernel)."""
  if "kernel" in params["output"]:
    return params["output"]["kernel"], params["output"]["bias"]
  return params["embed"]["embedding"].T, params["output"]["bias"]


def logits(params: dict, out: jax.Array) -> jax.Array:
  """v [..., hidden] -> logits W_o v + b_o [..., tgt_vocab]."""
  kernel, bias = output_layer(params)
  return precision.matmul(out, kernel) + bias


def next_token_log_probs(params: dict, carry: DecoderCarry, tokens: jax.Array, mem: Memory,
                         config: ModelConfig) -> tuple[DecoderCarry, jax.Array, jax.Array]:
  """One search step from the previous tokens y_{t-1} int32 [batch].

  Returns:
    (carry at t, log p(y_t | y_<t, x) [batch, tgt_vocab], attention weights [batch, src_len]).
  """
  emb = layers.embed(params["embed"], tokens)  # [batch, embed]
  carry, out, weights = step(params, carry, emb, project_embeddings(params, emb), mem, config,
                             search=True)
  return carry, jax.nn.log_softmax(logits(params, out)), weights


def attention_noise(dropout_key: jax.Array | None, steps: int, mask: jax.Array,
                    config: ModelConfig) -> jax.Array:
  """Per-step noise for a variant that trains with it (monotonic: pre-sigmoid noise,
  Raffel et al. sec. 2.5): float32 [steps, batch, src_len] ~ N(0, 1) while training (a
  dropout key given), else [steps, batch, 0]."""
  recurrence = attention.VARIANTS[config.attention].recurrence
  if dropout_key is None or recurrence is None or not recurrence.noisy:
    return jnp.zeros((steps, mask.shape[0], 0), jnp.float32)
  return jax.random.normal(jax.random.fold_in(dropout_key, 1), (steps,) + mask.shape)


def teacher_forced_outputs(params: dict, enc: EncoderOutput, tgt_in: jax.Array,
                           config: ModelConfig, dropout_key: jax.Array | None = None,
                           remat: bool = False, heads: bool = False
                           ) -> tuple[jax.Array, jax.Array]:
  """Runs the decoder recurrence over given previous tokens, up to the output layer.

  Args:
    params: decoder parameters.
    enc: EncoderOutput for the batch.
    tgt_in: int32 [batch, tgt_len]: BOS y_1 ... y_{n} PAD...
    config: model options.
    dropout_key: PRNG key or None.
    remat: under differentiation, recompute each step's activations in the backward
      pass instead of keeping them for every time step (jax.checkpoint of the step).
    heads: a multi-head variant's weights per head, [batch, tgt_len, heads, src_len].
  Returns:
    output vectors v_t [batch, tgt_len, hidden] (after dropout), attention weights
    [batch, tgt_len, src_len].
  """
  k_emb, k_out = (jax.random.split(dropout_key) if dropout_key is not None else (None, None))
  mem = memory(params, enc, config)
  emb = layers.dropout(k_emb, layers.embed(params["embed"], tgt_in), config.dropout)  # [batch, tgt_len, embed]
  emb_proj = project_embeddings(params, emb)  # [batch, tgt_len, gates*hidden]: one matmul

  def body(carry, inputs):
    e, ep, noise = inputs
    carry, out, weights = step(params, carry, e, ep, mem, config, noise, heads=heads)
    return carry, (out, weights)

  if remat:
    body = jax.checkpoint(body, prevent_cse=False)  # the scan already keeps steps apart
  _, (outs, weights) = jax.lax.scan(
      body, initial_carry(params, enc, config),
      (jnp.swapaxes(emb, 0, 1), jnp.swapaxes(emb_proj, 0, 1),
       attention_noise(dropout_key, tgt_in.shape[1], enc.mask, config)))
  outs = jnp.swapaxes(outs, 0, 1)  # [batch, tgt_len, hidden]
  return layers.dropout(k_out, outs, config.dropout), jnp.swapaxes(weights, 0, 1)
