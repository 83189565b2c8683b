"""The batch every layer speaks: padded source and target ids, lengths and gold alignments.

A leaf, so the model can take batches without knowing where they come from (attn_jax.data
makes them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
  src: np.ndarray  # int32 [batch, src_len]: tokens, EOS, PAD...
  src_len: np.ndarray  # int32 [batch]: real length incl. EOS; >= 1
  tgt_in: np.ndarray  # int32 [batch, tgt_len]: BOS, tokens, PAD...
  tgt_out: np.ndarray  # int32 [batch, tgt_len]: tokens, EOS, PAD...
  tgt_len: np.ndarray  # int32 [batch]: real length incl. EOS; 0 marks a filler row
  align: np.ndarray  # int32 [batch, tgt_len]: gold source position of each target token; -1 if none
