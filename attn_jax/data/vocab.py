"""Subword vocabularies: SentencePiece models trained once and stored in the workdir.

Ids 0, 1, 2 are PAD, BOS and EOS as everywhere in attn_jax; id 3 is <unk>, which
`byte_fallback` leaves unused: a character outside the learned pieces becomes
its UTF-8 bytes, so no input maps to unknown. Normalisation is the identity, so
decode(encode(text)) gives the text back up to runs of whitespace.

A vocabulary is identified by the SHA-256 of its model file; checkpoints record
it so that a model is never restored against another vocabulary. Beside each
model file, `<file>.json` records what it was trained for (size, languages,
SentencePiece options, the digests of the model and of its training text),
written before the run's first step; a stored vocabulary is used only for a run
that asks for the same size, languages and options (VocabMismatchError otherwise).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re

import sentencepiece as spm

from attn_jax import atomic_write
from attn_jax.config import BOS_ID, ConfigError, EOS_ID, PAD_ID
from attn_jax.data import bpe_dropout

UNK_ID = 3
MODEL_TYPE = "bpe"
OPTIONS = {"model_type": MODEL_TYPE, "character_coverage": 1.0, "byte_fallback": True,
           "normalization_rule_name": "identity"}  # what train() gives SentencePiece


class VocabError(ValueError):
  """A vocabulary file that cannot be used; the message names it."""


class VocabMismatchError(VocabError):
  """A stored vocabulary trained for other options than the run asks for."""


class Vocab:
  """A loaded SentencePiece model: text <-> ids."""

  def __init__(self, model: bytes, path: str | None = None):
    """Raises VocabError naming `path` when `model` is not a SentencePiece model."""
    self.processor = spm.SentencePieceProcessor()
    try:
      self.processor.LoadFromSerializedProto(model)
    except RuntimeError:
      self.processor = None
    if self.processor is None or self.processor.get_piece_size() <= UNK_ID:
      raise VocabError(f"{path or 'vocabulary'}: not a SentencePiece model "
                       f"({len(model)} bytes that do not parse as one)")
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


def train(sentences: list[str], vocab_size: int, model_type: str = MODEL_TYPE) -> bytes:
  """A serialized SentencePiece model trained on `sentences` (deterministic).

  Raises:
    ConfigError naming vocab_size when SentencePiece cannot build that many pieces
    (byte fallback alone needs 256 + the specials + every distinct character).
  """
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        **{**OPTIONS, "model_type": model_type}, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        unk_id=UNK_ID, num_threads=1, minloglevel=2)
  except RuntimeError as e:
    reason = str(e).splitlines()[0].split("] ")[-1]
    too_small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", reason)
    if too_small:  # SentencePiece's own advice names an option this project does not have
      reason = (f"it must be at least {too_small.group(1)} (every distinct character, 256 "
                f"byte pieces and the special ids)")
    raise ConfigError(f"vocab_size: {vocab_size} does not work for this corpus: {reason}") from None
  return model.getvalue()


def load(path: str) -> Vocab:
  with open(path, "rb") as f:
    return Vocab(f.read(), path)


def record_path(path: str) -> str:
  """Where the record of the vocabulary at `path` is kept."""
  return path + ".json"


def _text_digest(sentences: list[str]) -> str:
  digest = hashlib.sha256()
  for sentence in sentences:
    digest.update(sentence.encode("utf-8") + b"\n")
  return digest.hexdigest()


def _describe(record: dict) -> str:
  return (f"vocab_size={record['vocab_size']}, languages {'+'.join(record['languages'])}, "
          f"options {json.dumps(record['options'], sort_keys=True)}")


def check(stored: Vocab, wanted: dict) -> None:
  """Raises VocabMismatchError naming the file and both descriptions when the vocabulary
  at stored.path was trained for another size, languages or options than `wanted`
  ({"vocab_size", "languages", "options"}), or has changed since its record was written.
  A vocabulary without a record (written before records were kept) is checked by its
  size alone."""
  have = _read_record(stored, wanted)
  changed = have.get("sha256", stored.sha256) != stored.sha256
  if changed or any(have[k] != wanted[k] for k in ("vocab_size", "languages", "options")):
    raise VocabMismatchError(
        f"{stored.path} was trained for {_describe(have)}"
        f"{' (and the file has changed since)' if changed else ''}, but this run asks for "
        f"{_describe(wanted)}: remove it and {record_path(stored.path)} to train a new one, "
        f"or run with the options it was trained for")


def _read_record(stored: Vocab, wanted: dict) -> dict:
  try:
    with open(record_path(stored.path), encoding="utf-8") as f:
      have = json.load(f)
  except FileNotFoundError:
    return {"vocab_size": stored.size, "languages": wanted["languages"],
            "options": wanted["options"]}
  except (OSError, ValueError) as e:
    raise VocabError(f"{record_path(stored.path)}: unreadable vocabulary record ({e})") from None
  if not isinstance(have, dict) or not {"vocab_size", "languages", "options"} <= set(have):
    raise VocabError(f"{record_path(stored.path)}: not a vocabulary record")
  return have


def load_or_train(path: str, sentences: list[str], vocab_size: int,
                  languages: tuple[str, ...]) -> Vocab:
  """The vocabulary stored at `path` if it was trained for this size, these languages and
  options (check), else trained on `sentences` and written there first if absent.

  The model file and its record are written atomically (record last), so an interrupted
  run never leaves half a model. Raises VocabError naming the file.
  """
  wanted = {"vocab_size": vocab_size, "languages": list(languages), "options": OPTIONS}
  if not os.path.exists(path):
    model = train(sentences, vocab_size)
    atomic_write.write_atomically(path, model)
    record = dict(wanted, sha256=hashlib.sha256(model).hexdigest(),
                  text_sha256=_text_digest(sentences), sentences=len(sentences))
    atomic_write.write_atomically(record_path(path), json.dumps(record, indent=1) + "\n")
  stored = load(path)
  check(stored, wanted)
  return stored

