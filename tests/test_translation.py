"""The translation data pipeline on a small generated corpus."""

from __future__ import annotations

import os

import pytest

from attn_jax import corpus, data, translation

EN = ["a cat sits on the mat", "two dogs run", "", "the bird sings a very long song " * 6,
      "a red car", "the old man reads"]
DE = ["eine katze sitzt auf der matte", "zwei hunde rennen", "leer", "der vogel singt " * 6,
      "ein rotes auto", "der alte mann liest"]


@pytest.fixture()
def corpus_dir(tmp_path):
  for split in ("train", "val"):
    for lang, lines in (("en", EN), ("de", DE)):
      (tmp_path / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(tmp_path)


@pytest.mark.parametrize("joint, size", [(True, 400), (False, 300)])
def test_training_split_drops_empty_filters_long_and_round_trips(corpus_dir, tmp_path, joint,
                                                                 size):
  train_text = corpus.read_parallel(corpus_dir, "train", "en", "de", drop_empty=True)
  vocabs = translation.build_vocabs(train_text, str(tmp_path / "vocab"), "en", "de", size, joint)
  assert (vocabs.src is vocabs.tgt) == joint
  split = translation.load_split(corpus_dir, "train", "en", "de", vocabs, widths=(16, 32),
                                 training=True)
  assert split.text.dropped_empty == 1 and split.buckets.filtered == 1
  kept = {i for index in split.buckets.index for i in index}
  assert len(kept) == 4
  for ds, index in zip(split.buckets.sets, split.buckets.index):
    for row, i in enumerate(index):
      assert vocabs.src.decode(ds.src[row, :ds.src_len[row]]) == split.text.src[i]
      assert vocabs.tgt.decode(ds.tgt_out[row, :ds.tgt_len[row]]) == split.text.tgt[i]


def test_evaluation_split_keeps_every_line(corpus_dir, tmp_path):
  train_text = corpus.read_parallel(corpus_dir, "train", "en", "de", drop_empty=True)
  vocabs = translation.build_vocabs(train_text, str(tmp_path / "vocab"), "en", "de", 400, True)
  split = translation.load_split(corpus_dir, "val", "en", "de", vocabs, widths=(16, 32))
  assert split.buckets.filtered == 0 and split.text.dropped_empty == 0
  lines = sorted(i for index in split.buckets.index for i in index)
  assert lines == list(range(len(EN)))
  assert max(split.buckets.widths) > 32  # widened to the longest line
  assert sum(data.size(ds) for ds in split.buckets.sets) == len(EN)
  assert os.path.exists(translation.vocab_paths(str(tmp_path / "vocab"), "en", "de", True)[0])
