"""Matmul FLOPs of the model, counted from the config (for utilisation figures).

A matmul of [m, k] by [k, n] costs 2 m k n FLOPs; elementwise work, softmax and
the loss are left out. Counts use real lengths (EOS included), not padded
widths, so padding never counts as useful work. Training costs three forward
passes: the forward itself and a backward with two matmuls per forward one.
"""

from __future__ import annotations

import numpy as np

from attn_jax.config import ModelConfig
from attn_jax.model import attention, cells, decoder


def _encoder_per_token(config: ModelConfig) -> int:
  gates = cells.CELLS[config.cell].gates
  h, directions = config.encoder_hidden_size, (2 if config.bidirectional else 1)
  total, size_in = 0, config.embed_size
  for _ in range(config.encoder_layers):
    total += directions * 2 * (size_in + h) * gates * h  # input and recurrent projections
    size_in = directions * h
  return total


def _decoder_per_token(config: ModelConfig) -> int:
  gates, h = cells.CELLS[config.cell].gates, config.hidden_size
  return (2 * (decoder.cell_input_size(config) + h) * gates * h  # cell
          + 2 * decoder.readout_size(config) * h  # W_r or W_c
          + 2 * h * config.tgt_vocab_size)  # W_o (or E^T, tied)


def forward(config: ModelConfig, src_len: np.ndarray, tgt_len: np.ndarray) -> float:
  """Matmul FLOPs of the teacher-forced forward pass over sentence pairs.

  src_len, tgt_len: int [pairs], real lengths with EOS (tgt_len 0 marks a filler row).
  """
  src_len = np.asarray(src_len, np.float64)
  tgt_len = np.asarray(tgt_len, np.float64)
  real = tgt_len > 0
  src_len, tgt_len = src_len[real], tgt_len[real]
  h, a = config.hidden_size, config.encoder_output_size
  att = attention.VARIANTS[config.attention].flops(decoder.attention_sizes(config))
  bridges = 2 if cells.CELLS[config.cell].has_memory else 1
  per_sentence = bridges * 2 * a * h
  return float(np.sum(src_len * (_encoder_per_token(config) + att.per_key)
                      + tgt_len * (_decoder_per_token(config) + att.per_query)
                      + src_len * tgt_len * att.per_pair + per_sentence))


def train(config: ModelConfig, src_len: np.ndarray, tgt_len: np.ndarray) -> float:
  """Matmul FLOPs of one training step (forward and backward) over sentence pairs."""
  return 3.0 * forward(config, src_len, tgt_len)
