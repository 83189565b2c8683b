"""Subword vocabularies: SentencePiece models trained once and stored in the workdir.

Ids 0, 1, 2 are PAD, BOS and EOS as everywhere in attn_jax; id 3 is <unk>, which
`byte_fallback` leaves unused: a character outside the learned pieces becomes
its UTF-8 bytes, so no input maps to unknown. Normalisation is the identity, so
decode(encode(text)) gives the text back up to runs of whitespace.

A vocabulary is identified by the SHA-256 of its model file; checkpoints record
it so that a model is never restored against another vocabulary.
"""

from __future__ import annotations

import hashlib
import io
import os
import random

import sentencepiece as spm

from attn_jax.config import BOS_ID, ConfigError, EOS_ID, PAD_ID
from attn_jax.data import bpe_dropout

UNK_ID = 3


class Vocab:
  """A loaded SentencePiece model: text <-> ids."""

  def __init__(self, model: bytes, path: str | None = None):
    self.processor = spm.SentencePieceProcessor(model_proto=model)
    self.sha256 = hashlib.sha256(model).hexdigest()
    self.path = path
    self._merges: bpe_dropout.Merges | None = None  # built on the first sample()

  @property
  def size(self) -> int:
    return self.processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    """Subword ids of one sentence, without BOS/EOS."""
    return self.processor.encode(text)

  def sample(self, texts: list[str], dropout: float, seed: int) -> list[list[int]]:
    """Subword ids of each text segmented by BPE-dropout (Provilkov et al. 2020): every
    merge is skipped with probability `dropout` (bpe_dropout.py). The same seed gives the
    same segmentations in any process and thread; seed >= 0."""
    if self._merges is None:
      self._merges = bpe_dropout.Merges(self.processor)
    rng = random.Random(seed)
    return [self._merges.segment(text, dropout, rng) for text in texts]

  def decode(self, ids) -> str:
    """Text of ids; PAD, BOS and EOS are dropped."""
    return self.processor.decode([int(i) for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

  def pieces(self, ids) -> list[str]:
    """Readable piece of each id (for plots)."""
    return [self.processor.id_to_piece(int(i)) for i in ids]


def train(sentences: list[str], vocab_size: int, model_type: str = "bpe") -> bytes:
  """A serialized SentencePiece model trained on `sentences` (deterministic).

  Raises:
    ConfigError naming vocab_size when SentencePiece cannot build that many pieces
    (byte fallback alone needs 256 + the specials + every distinct character).
  """
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, byte_fallback=True,
        normalization_rule_name="identity", pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        unk_id=UNK_ID, num_threads=1, minloglevel=2)
  except RuntimeError as e:
    reason = str(e).splitlines()[0].split("] ")[-1]
    raise ConfigError(f"vocab_size: {vocab_size} does not work for this corpus: {reason}") from None
  return model.getvalue()


def load(path: str) -> Vocab:
  with open(path, "rb") as f:
    return Vocab(f.read(), path)


def load_or_train(path: str, sentences: list[str], vocab_size: int) -> Vocab:
  """The vocabulary stored at `path`, trained on `sentences` and written there first if absent.

  The file is written atomically, so an interrupted run never leaves half a model.
  """
  if not os.path.exists(path):
    model = train(sentences, vocab_size)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
      f.write(model)
    os.replace(tmp, path)
  return load(path)
