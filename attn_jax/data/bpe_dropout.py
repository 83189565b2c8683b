"""BPE-dropout (Provilkov et al. 2020) over a SentencePiece BPE model's pieces.

SentencePiece segments a normalised sentence by merging, again and again, the
adjacent pair of symbols whose concatenation is the highest-scoring piece (the
earliest merge learned), the leftmost pair first among equals. BPE-dropout skips
each such merge with probability p, so one text gets many segmentations. This
module does that merge loop itself, in the order SentencePiece does it (with p = 0
it returns exactly SentencePiece's ids), and draws from a `random.Random` the caller
seeds. SentencePiece's own sampling (`enable_sampling`) is not reproducible across
processes for a given seed, so a resumed run could not read the batches an
uninterrupted one would; Python's Mersenne Twister seeded with an int is.

A skipped pair is dropped from the queue, as in SentencePiece: it comes back only
if one of its two symbols changes through another merge. Merges never cross a
word boundary (pieces begin with the word marker "▁" or hold none), so each word is
merged on its own, starting from a cached queue of its adjacent pairs.

It covers the models vocab.train builds: BPE with byte fallback and no user-defined
pieces (which SentencePiece would keep whole); Merges refuses any other.
"""

from __future__ import annotations

import heapq
import random

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

WORD_MARK = "\u2581"  # "▁", SentencePiece's escaped space
CACHED_WORDS = 1_000_000  # words whose starting queue is kept; later ones are built each time


class Merges:
  """The merge table of one SentencePiece BPE model."""

  def __init__(self, processor: spm.SentencePieceProcessor):
    """Raises ValueError for a model that is not BPE with byte fallback, or that has
    user-defined pieces."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(processor.serialized_model_proto())
    piece_type = sentencepiece_model_pb2.ModelProto.SentencePiece.Type
    if (proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.BPE
        or not proto.trainer_spec.byte_fallback
        or any(p.type == piece_type.USER_DEFINED for p in proto.pieces)):
      raise ValueError("BPE-dropout needs a BPE model with byte fallback and no user-defined "
                       "pieces (as vocab.train builds)")
    # piece -> (-score, id): the heap pops the smallest, i.e. the highest score
    self.pieces: dict[str, tuple[float, int]] = {}
    for i in range(processor.get_piece_size()):
      if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_byte(i)
              or processor.is_unused(i)):
        self.pieces[processor.id_to_piece(i)] = (-processor.get_score(i), i)
    self.byte_ids = [processor.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
    self.normalize = processor.normalize
    # a piece with the word marker after its first character would join two words
    self.per_word = not any(WORD_MARK in p[1:] for p in self.pieces)
    self._queues: dict[str, list[tuple[float, int, int, int]]] = {}

  def _queue(self, word: str) -> list[tuple[float, int, int, int]]:
    """The heap of (-score, left, right, length) of the word's adjacent characters that
    form a piece; cached per word (not per sentence), so copy before use."""
    queue = self._queues.get(word)
    if queue is None:
      queue = [(self.pieces[word[i:i + 2]][0], i, i + 1, 2) for i in range(len(word) - 1)
               if word[i:i + 2] in self.pieces]
      heapq.heapify(queue)
      if self.per_word and len(self._queues) < CACHED_WORDS:
        self._queues[word] = queue
    return queue

  def _merged(self, word: str, dropout: float, draw) -> list[str] | str:
    """The word's symbols after merging, each merge skipped when draw() < dropout; ""
    marks a symbol merged into its left neighbour. The word itself when nothing merges."""
    queue = self._queue(word)
    if not queue:
      return word
    queue, pieces, n = queue.copy(), self.pieces, len(word)
    symbols = list(word)  # symbols[i]: the symbol starting at character i, "" once merged away
    nxt = list(range(1, n + 1))  # the next live symbol's start (n: none)
    prv = list(range(-1, n - 1))  # the previous live symbol's start (-1: none)
    while queue:
      _, left, right, length = heapq.heappop(queue)
      a, b = symbols[left], symbols[right]
      if not a or not b or len(a) + len(b) != length:
        continue  # stale: one of the two symbols was merged since the pair was queued
      if draw() < dropout:
        continue
      symbols[left] = merged = a + b
      symbols[right] = ""
      after = nxt[left] = nxt[right]
      if after < n:
        prv[after] = left
        hit = pieces.get(merged + symbols[after])
        if hit is not None:
          heapq.heappush(queue, (hit[0], left, after, len(merged) + len(symbols[after])))
      before = prv[left]
      hit = pieces.get(symbols[before] + merged) if before >= 0 else None
      if hit is not None:
        heapq.heappush(queue, (hit[0], before, left, len(symbols[before]) + len(merged)))
    return symbols

  def _merge_word(self, word: str, dropout: float, draw, ids: list[int]) -> None:
    """Appends to `ids` the word's ids, each merge skipped when draw() < dropout."""
    pieces = self.pieces
    for symbol in self._merged(word, dropout, draw):
      hit = pieces.get(symbol)
      if hit is not None:
        ids.append(hit[1])
      elif symbol:  # byte fallback: a character outside the pieces becomes its UTF-8 bytes
        ids.extend(self.byte_ids[b] for b in symbol.encode("utf-8"))

  def segment(self, text: str, dropout: float, rng: random.Random) -> list[int]:
    """Ids of `text` (without BOS/EOS), each merge skipped with probability `dropout`."""
    normalized = self.normalize(text)
    ids: list[int] = []
    if not self.per_word:
      self._merge_word(normalized, dropout, rng.random, ids)
      return ids
    start = 0
    for i in range(1, len(normalized) + 1):
      if i == len(normalized) or normalized[i] == WORD_MARK:
        self._merge_word(normalized[start:i], dropout, rng.random, ids)
        start = i
    return ids
