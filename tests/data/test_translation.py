"""The translation data pipeline on a small generated corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import conftest

from attn_jax.data import batching, corpus, dataset, translation, vocab

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
  assert sum(dataset.size(ds) for ds in split.buckets.sets) == len(EN)
  assert os.path.exists(translation.vocab_paths(str(tmp_path / "vocab"), "en", "de", True)[0])


def _spaced(text: str) -> str:
  """The text as SentencePiece gives it back: whitespace runs as one space, none at the ends."""
  return " ".join(text.split())


def test_resegmented_epochs_keep_every_pair_text_and_step_count(corpus_dir, tmp_path):
  train_text = corpus.read_parallel(corpus_dir, "train", "en", "de", drop_empty=True)
  vocabs = translation.build_vocabs(train_text, str(tmp_path / "vocab"), "en", "de", 400, True)
  split = translation.load_split(corpus_dir, "train", "en", "de", vocabs, widths=(8, 16, 64),
                                 training=True, text=train_text)
  stream = translation.Resegmented(split.buckets, train_text, vocabs, 0.5, batch_size=2, seed=3)
  fixed = batching.batches_per_epoch(split.buckets, 2)
  assert stream.per_epoch == fixed
  for epoch in range(3):
    buckets = stream.epoch_buckets(epoch)
    assert buckets.widths == split.buckets.widths and buckets.filtered == 0
    order = np.concatenate(split.buckets.index)  # epoch_buckets' index points into this
    assert sorted(int(order[k]) for ix in buckets.index for k in ix) == sorted(order)  # all, once
    for ds, index in zip(buckets.sets, buckets.index):
      for row, k in enumerate(index):
        i = order[k]
        assert vocabs.src.decode(ds.src[row, :ds.src_len[row]]) == _spaced(train_text.src[i])
        assert vocabs.tgt.decode(ds.tgt_out[row, :ds.tgt_len[row]]) == _spaced(train_text.tgt[i])
  segmentations = {tuple(stream.epoch_buckets(e).sets[-1].src_len) for e in range(6)}
  assert len(segmentations) > 1  # epochs differ
  batches = [stream.batch(s) for s in range(3 * fixed)]
  assert all(b.src.shape[0] == 2 and b.src.shape[1] in split.buckets.widths for b in batches)
  fresh = translation.Resegmented(split.buckets, train_text, vocabs, 0.5, batch_size=2, seed=3)
  for s in (2 * fixed + 1, 0, fixed):  # a step's batch does not depend on what came before
    assert all((a == b).all() for a, b in zip(fresh.batch(s), batches[s]))


def test_resegmented_pairs_no_bucket_holds_keep_their_segmentation(corpus_dir, tmp_path):
  train_text = corpus.read_parallel(corpus_dir, "train", "en", "de", drop_empty=True)
  vocabs = translation.build_vocabs(train_text, str(tmp_path / "vocab"), "en", "de", 400, True)
  split = translation.load_split(corpus_dir, "train", "en", "de", vocabs, widths=(16,),
                                 training=True, text=train_text)
  stream = translation.Resegmented(split.buckets, train_text, vocabs, 0.99, batch_size=2, seed=0)
  [ds] = stream.epoch_buckets(0).sets
  [fixed] = split.buckets.sets
  longest = int(np.argmax(fixed.src_len))  # 0.99 of its merges skipped: too long for 16
  assert (ds.src[longest] == fixed.src[longest]).all()


def test_resegmented_batches_are_the_same_in_another_process(corpus_dir, tmp_path):
  """What exact resume needs: a new process reads the same step's batch."""
  script = f"""
import json
from attn_jax.data import corpus, translation
text = corpus.read_parallel({corpus_dir!r}, "train", "en", "de", drop_empty=True)
vocabs = translation.build_vocabs(text, {str(tmp_path / "vocab")!r}, "en", "de", 400, True)
split = translation.load_split({corpus_dir!r}, "train", "en", "de", vocabs, widths=(8, 16, 64),
                               training=True, text=text)
stream = translation.Resegmented(split.buckets, text, vocabs, 0.5, batch_size=2, seed=3)
print(json.dumps([[field.tolist() for field in stream.batch(s)] for s in (0, 5, 9)]))
"""
  root = conftest.ROOT
  run = lambda: json.loads(subprocess.run(
      [sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=root), check=True,
      capture_output=True, text=True).stdout)
  first = run()  # trains the vocabulary; the second process loads it
  assert run() == first


def test_distilled_pairs_join_the_training_pairs_and_keep_the_vocabulary(corpus_dir, tmp_path):
  from attn_jax.config import DataConfig
  from attn_jax.data import pipeline
  teacher = tmp_path / "teacher.de"  # a line per training source line; one blank
  teacher.write_text("\n".join(" ".join(reversed(t.split())) for t in DE[:-1]) + "\n\n",
                     encoding="utf-8")
  config = DataConfig(task="translation", data_dir=corpus_dir, vocab_size=400, max_len=30)
  plain = pipeline.load(config, 2, str(tmp_path / "plain"))
  config = DataConfig(task="translation", data_dir=corpus_dir, vocab_size=400, max_len=30,
                      distilled_targets=str(teacher))
  distilled = pipeline.load(config, 2, str(tmp_path / "distilled"))
  assert pipeline.vocab_ids(distilled.vocabs) == pipeline.vocab_ids(plain.vocabs)
  # 6 lines: the blank source and the over-long pair go from both; the teacher's blank line too
  assert (plain.train.size, distilled.train.size) == (4, 4 + 3)
  assert "(4 distilled pairs added, 3 empty dropped, 2 over max_len 30 filtered)" in (
      distilled.summary)
  targets = {distilled.vocabs.tgt.decode(row[row >= 3].tolist())  # the pieces, no specials
             for step in range(20) for row in distilled.train.batch(step).tgt_out}
  assert "matte der auf sitzt katze eine" in targets and "eine katze sitzt auf der matte" in targets


@pytest.fixture(scope="module")
def small_vocab():
  return vocab.Vocab(vocab.train(EN * 20 + DE * 20, 300))


@pytest.mark.parametrize("limit", [1, 3, 5, 8, 1000])
def test_cut_pieces_are_short_and_begin_at_word_starts(small_vocab, limit):
  ids = np.asarray(small_vocab.encode(EN[3] + " " + EN[0]), np.int32)
  pieces = translation.cut(ids, limit, small_vocab)
  np.testing.assert_array_equal(np.concatenate(pieces), ids)  # nothing lost, order kept
  assert all(1 <= len(p) <= limit for p in pieces)
  if len(ids) <= limit:
    assert len(pieces) == 1
  starts = [small_vocab.pieces(p[:1])[0].startswith("\u2581") for p in pieces]
  longest_word = max(len(small_vocab.encode(w)) for w in (EN[3] + " " + EN[0]).split())
  if limit >= longest_word:  # every word fits: each piece begins a word
    assert all(starts)
  else:  # a word longer than the limit is cut inside
    assert starts[0]
