"""The translation task's data: raw parallel text -> subword ids -> length buckets.

Training pairs that are empty on either side are dropped, and pairs longer than
the widest bucket are filtered; both are counted. Evaluation splits keep every
line: their buckets are widened to the longest sentence, and `Buckets.index`
maps each row back to its line so outputs can be written in input order.
"""

from __future__ import annotations

import bisect
import os
from typing import NamedTuple

import numpy as np

from attn_jax.data import batching, corpus, dataset, vocab
from attn_jax.data.bpe_dropout import WORD_MARK

DEFAULT_WIDTHS = (12, 16, 20, 24, 32, 48, 64)  # subwords + EOS; Multi30k fills them ~86 %


class Vocabs(NamedTuple):
  src: vocab.Vocab
  tgt: vocab.Vocab  # the same object as src for a joint vocabulary


class Split(NamedTuple):
  buckets: batching.Buckets
  text: corpus.ParallelText | None  # raw sentences in file order (references for BLEU)


def vocab_paths(directory: str, src_lang: str, tgt_lang: str, joint: bool) -> tuple[str, str]:
  if joint:
    path = os.path.join(directory, f"spm.{src_lang}{tgt_lang}.model")
    return path, path
  return (os.path.join(directory, f"spm.{src_lang}.model"),
          os.path.join(directory, f"spm.{tgt_lang}.model"))


def build_vocabs(train: corpus.ParallelText, directory: str, src_lang: str, tgt_lang: str,
                 vocab_size: int, joint: bool) -> Vocabs:
  """Loads the vocabularies from `directory`, training them on `train` the first time;
  vocab.VocabError naming a stored one trained for another size, languages or options."""
  os.makedirs(directory, exist_ok=True)
  src_path, tgt_path = vocab_paths(directory, src_lang, tgt_lang, joint)
  if joint:
    shared = vocab.load_or_train(src_path, train.src + train.tgt, vocab_size, (src_lang, tgt_lang))
    return Vocabs(shared, shared)
  return Vocabs(vocab.load_or_train(src_path, train.src, vocab_size, (src_lang,)),
                vocab.load_or_train(tgt_path, train.tgt, vocab_size, (tgt_lang,)))


def load_vocabs(directory: str, src_lang: str, tgt_lang: str, joint: bool) -> Vocabs:
  """The vocabularies build_vocabs stored in `directory`; raises FileNotFoundError naming a
  missing one, vocab.VocabError one that is not a SentencePiece model."""
  src_path, tgt_path = vocab_paths(directory, src_lang, tgt_lang, joint)
  src = vocab.load(src_path)
  return Vocabs(src, src if joint else vocab.load(tgt_path))


def encode(text: corpus.ParallelText, vocabs: Vocabs) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Subword ids of both sides, without specials: two lists of int32 [len]."""
  src = [np.asarray(vocabs.src.encode(s), np.int32) for s in text.src]
  tgt = [np.asarray(vocabs.tgt.encode(t), np.int32) for t in text.tgt]
  return src, tgt


class Resegmented:
  """A training stream whose pairs are segmented afresh each epoch by BPE-dropout.

  Subword regularisation (Provilkov et al. 2020): every epoch splits each training
  sentence into subwords anew, every BPE merge skipped with probability `dropout`,
  so the model learns from many segmentations of one text. The epoch's pairs are
  bucketed by their sampled lengths (the same bucket widths, so the same batch
  shapes) and batched as batching.train_batch does. An epoch keeps the step count of
  the deterministic segmentation, so the step -> epoch map stays fixed: when a
  sampled epoch has more batches (a bucket's last short batch more or less), its
  last ones in the shuffled order are left out; when fewer, its first ones repeat.
  The draws (bpe_dropout.py) are seeded by (seed or shuffle_seed, epoch), so the batch
  of a step is a pure function of the step, in any process: a resumed run reads
  exactly what an uninterrupted one would. A pair whose sample no bucket holds keeps
  its deterministic segmentation.
  """

  def __init__(self, buckets: batching.Buckets, text: corpus.ParallelText, vocabs: Vocabs,
               dropout: float, batch_size: int, seed: int, shuffle_seed: int | None = None):
    """buckets: batching.bucket_pairs of encode(text) (training pairs only); dropout in (0, 1)."""
    self.buckets, self.text, self.vocabs, self.dropout = buckets, text, vocabs, dropout
    self.batch_size, self.seed, self.shuffle_seed = batch_size, seed, shuffle_seed
    self.per_epoch = batching.batches_per_epoch(buckets, batch_size)
    pairs = np.concatenate(buckets.index)  # positions in text, in the buckets' row order
    self._src_text = [text.src[i] for i in pairs]
    self._tgt_text = [text.tgt[i] for i in pairs]
    self._cached: tuple[int, batching.Buckets] | None = None  # the last epoch sampled

  def _fixed(self, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic (source, target) ids of pair k (in the buckets' row order)."""
    for ds in self.buckets.sets:
      if k < dataset.size(ds):
        return ds.src[k, :ds.src_len[k] - 1], ds.tgt_out[k, :ds.tgt_len[k] - 1]
      k -= dataset.size(ds)
    raise IndexError(k)

  def epoch_buckets(self, epoch: int) -> batching.Buckets:
    """Every training pair of the buckets, segmented by the draws of `epoch`, bucketed."""
    if self._cached is None or self._cached[0] != epoch:
      seed = self.seed if self.shuffle_seed is None else self.shuffle_seed
      # one stream per side: entropy (seed, epoch, side) -> a 64-bit int seed
      src_seed, tgt_seed = (
          int(np.random.SeedSequence([seed, epoch, side]).generate_state(1, np.uint64)[0])
          for side in (0, 1))
      src = self.vocabs.src.sample(self._src_text, self.dropout, src_seed)
      tgt = self.vocabs.tgt.sample(self._tgt_text, self.dropout, tgt_seed)
      widest = self.buckets.widths[-1]
      for k, (s, t) in enumerate(zip(src, tgt)):
        if max(len(s), len(t)) + 1 > widest:
          src[k], tgt[k] = self._fixed(k)
      self._cached = (epoch, batching.bucket_pairs(
          [np.asarray(s, np.int32) for s in src], [np.asarray(t, np.int32) for t in tgt],
          self.buckets.widths))
    return self._cached[1]

  def batch(self, step: int) -> dataset.Batch:
    """The batch of training step `step`: Batch [batch_size, width]."""
    epoch, index = divmod(step, self.per_epoch)
    buckets = self.epoch_buckets(epoch)
    sampled_per_epoch = batching.batches_per_epoch(buckets, self.batch_size)
    # train_batch's step for batch `index` (wrapped) of `epoch` in the sampled epoch's plan
    return batching.train_batch(buckets, epoch * sampled_per_epoch + index % sampled_per_epoch,
                                self.batch_size, self.seed, self.shuffle_seed)


def load_split(data_dir: str, split: str, src_lang: str, tgt_lang: str, vocabs: Vocabs,
               widths: tuple[int, ...] = DEFAULT_WIDTHS, training: bool = False,
               text: corpus.ParallelText | None = None) -> Split:
  """One split as buckets. Training drops empty pairs and filters long ones (both counted
  in the result: text.dropped_empty, buckets.filtered); evaluation keeps every line.
  `text`: the split already read (with the same drop_empty), to avoid reading it twice."""
  if text is None:
    text = corpus.read_parallel(data_dir, split, src_lang, tgt_lang, drop_empty=training)
  src, tgt = encode(text, vocabs)
  if not training:
    widths = _widened(widths, src, tgt)
  return Split(batching.bucket_pairs(src, tgt, widths), text)


def source_split(sentences: list[str], vocabs: Vocabs,
                 widths: tuple[int, ...] = DEFAULT_WIDTHS) -> Split:
  """Sentences to translate as a Split with empty targets; every sentence is kept."""
  src = [np.asarray(vocabs.src.encode(s), np.int32) for s in sentences]
  return ids_split(src, widths, sentences)


def ids_split(src: list[np.ndarray], widths: tuple[int, ...] = DEFAULT_WIDTHS,
              sentences: list[str] | None = None) -> Split:
  """Source ids [len] to translate as a Split with empty targets; every one is kept.
  `sentences`: their text, if known."""
  tgt = [np.zeros(0, np.int32)] * len(src)
  text = corpus.ParallelText(list(sentences or [""] * len(src)), [""] * len(src), 0)
  return Split(batching.bucket_pairs(src, tgt, _widened(widths, src, tgt)), text)


def cut(ids: np.ndarray, limit: int, vocab_: vocab.Vocab) -> list[np.ndarray]:
  """ids [len] in pieces of at most `limit` ids, each cut made before a word's first
  subword (one that starts with the word marker) where the last `limit` ids hold one,
  else at the limit; [ids] when it is short enough. limit >= 1."""
  if len(ids) <= limit:
    return [ids]
  starts = [i for i, piece in enumerate(vocab_.pieces(ids)) if piece.startswith(WORD_MARK)]
  pieces, begin = [], 0
  while len(ids) - begin > limit:
    end = begin + limit
    at = bisect.bisect_right(starts, end) - 1  # the last word start at or before `end`
    cut_at = starts[at] if at >= 0 and starts[at] > begin else end
    pieces.append(ids[begin:cut_at])
    begin = cut_at
  pieces.append(ids[begin:])
  return pieces


def _widened(widths: tuple[int, ...], src: list[np.ndarray], tgt: list[np.ndarray]
             ) -> tuple[int, ...]:
  """`widths` plus one wide enough for the longest pair (EOS included), so none is filtered."""
  longest = max((max(len(s), len(t)) for s, t in zip(src, tgt)), default=0) + 1
  return tuple(sorted(set(widths) | {max(longest, max(widths))}))
