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
import threading

import sentencepiece as spm

from attn_jax.config import BOS_ID, EOS_ID, PAD_ID, ConfigError

UNK_ID = 3


class Vocab:
  """A loaded SentencePiece model: text <-> ids."""

  def __init__(self, model: bytes, path: str | None = None):
    self.processor = spm.SentencePieceProcessor(model_proto=model)
    self.sha256 = hashlib.sha256(model).hexdigest()
    self.path = path

  @property
  def size(self) -> int:
    return self.processor.get_piece_size()

  def encode(self, text: str) -> list[int]:
    """Subword ids of one sentence, without BOS/EOS."""
    return self.processor.encode(text)

  def sample(self, texts: list[str], dropout: float) -> list[list[int]]:
    """Subword ids of each text segmented by BPE-dropout (Provilkov et al. 2020): every
    merge is skipped with probability `dropout`. Draws from SentencePiece's generator;
    seed it first (sampled)."""
    return self.processor.encode(texts, enable_sampling=True, alpha=dropout, nbest_size=-1,
                                 num_threads=1)

  def decode(self, ids) -> str:
    """Text of ids; PAD, BOS and EOS are dropped."""
    return self.processor.decode([int(i) for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

  def pieces(self, ids) -> list[str]:
    """Readable piece of each id (for plots)."""
    return [self.processor.id_to_piece(int(i)) for i in ids]


# SentencePiece draws its samples from one generator per thread, seeded from a
# process-wide seed; the lock keeps a seed and the draws that follow it together.
_SAMPLING = threading.Lock()


def sampled(jobs: list[tuple[Vocab, list[str]]], dropout: float, seed: int) -> list[list[list[int]]]:
  """Vocab.sample of each (vocabulary, texts) in order, the draws seeded by `seed`: the same
  seed gives the same segmentations in this process, whichever thread asks (not in another
  process: SentencePiece's sampling is not fixed by the seed alone). seed in [0, 2**31)."""
  with _SAMPLING:
    spm.set_random_generator_seed(seed)
    return [v.sample(texts, dropout) for v, texts in jobs]


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
