"""BPE-dropout's merge loop against SentencePiece's segmentation."""

from __future__ import annotations

import random

import pytest

from attn_jax.data import bpe_dropout, vocab

SENTENCES = [f"the {a} {b} sat on the {c} mat." for a in ("black", "white", "small")
             for b in ("cat", "dog", "bird") for c in ("red", "blue", "green", "old")] * 3
TEXTS = SENTENCES[:4] + ["", " ", "  the  cat \t sat  ", "Ünïcödé 漢字 🐈 mat",
                         "\u2581the \u2581 cat", "mat.mat.mat", "thethethe blackwhite"]


@pytest.fixture(scope="module")
def model():
  return vocab.Vocab(vocab.train(SENTENCES, vocab_size=300))


@pytest.mark.parametrize("per_word", [True, False])
def test_no_dropout_is_sentencepieces_segmentation(model, per_word):
  merges = bpe_dropout.Merges(model.processor)
  assert merges.per_word  # no piece holds the word marker after its start
  merges.per_word = per_word  # whole sentences give the same merges
  for text in TEXTS:
    assert merges.segment(text, 0.0, random.Random(0)) == model.encode(text), text


def test_dropout_of_almost_one_makes_no_merge(model):
  merges = bpe_dropout.Merges(model.processor)
  text = "the black cat sat."
  ids = merges.segment(text, 1.0 - 1e-12, random.Random(0))
  assert model.pieces(ids) == list("\u2581" + text.replace(" ", "\u2581"))


def test_dropout_lengthens_by_rate_and_keeps_the_text(model):
  merges = bpe_dropout.Merges(model.processor)
  lengths = []
  for rate in (0.0, 0.1, 0.5):
    rng = random.Random(1)
    samples = [merges.segment(text, rate, rng) for text in SENTENCES]
    assert [model.decode(ids) for ids in samples] == SENTENCES
    lengths.append(sum(map(len, samples)))
  assert lengths[0] < lengths[1] < lengths[2]


def test_a_model_other_than_bpe_with_byte_fallback_is_refused():
  unigram = vocab.Vocab(vocab.train(SENTENCES, vocab_size=280, model_type="unigram"))
  with pytest.raises(ValueError, match="needs a BPE model with byte fallback"):
    bpe_dropout.Merges(unigram.processor)
