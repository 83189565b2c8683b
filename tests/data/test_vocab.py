"""SentencePiece vocabularies: specials, byte fallback, round trips, determinism, storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

import conftest

from attn_jax.config import BOS_ID, EOS_ID, PAD_ID
from attn_jax.data import vocab

SENTENCES = [f"the {a} {b} sat on the {c} mat." for a in ("black", "white", "small")
             for b in ("cat", "dog", "bird") for c in ("red", "blue", "green", "old")] * 3


@pytest.fixture(scope="module")
def model_bytes():
  return vocab.train(SENTENCES, vocab_size=300)


def test_special_ids(model_bytes):
  v = vocab.Vocab(model_bytes)
  assert v.size == 300
  assert v.processor.pad_id() == PAD_ID and v.processor.bos_id() == BOS_ID
  assert v.processor.eos_id() == EOS_ID and v.processor.unk_id() == vocab.UNK_ID


def test_round_trip(model_bytes):
  v = vocab.Vocab(model_bytes)
  for text in SENTENCES[:5] + ["the cat sat."]:
    ids = v.encode(text)
    assert all(i >= 3 for i in ids)
    assert v.decode(ids) == text
    assert v.decode([BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]) == text


def test_unseen_characters_fall_back_to_bytes(model_bytes):
  v = vocab.Vocab(model_bytes)
  text = "Ünïcödé 漢字 🐈 mat"
  ids = v.encode(text)
  assert vocab.UNK_ID not in ids
  assert v.decode(ids) == text


def test_training_is_deterministic(model_bytes):
  assert vocab.train(SENTENCES, vocab_size=300) == model_bytes
  assert vocab.Vocab(model_bytes).sha256 == vocab.Vocab(model_bytes).sha256


def test_bpe_dropout_samples_are_seeded_and_keep_the_text(model_bytes):
  v = vocab.Vocab(model_bytes)
  texts = SENTENCES[:12]
  first = v.sample(texts, 0.3, seed=5)
  assert vocab.Vocab(model_bytes).sample(texts, 0.3, seed=5) == first
  in_a_thread = []
  worker = threading.Thread(target=lambda: in_a_thread.append(v.sample(texts, 0.3, 5)))
  worker.start()
  worker.join()
  assert in_a_thread[0] == first
  assert v.sample(texts, 0.3, seed=6) != first
  assert [v.decode(ids) for ids in first] == texts  # another segmentation of the same text
  assert sum(map(len, first)) > sum(len(v.encode(t)) for t in texts)  # merges were skipped


def test_bpe_dropout_samples_are_the_same_in_another_process(model_bytes, tmp_path):
  path = tmp_path / "spm.model"
  path.write_bytes(model_bytes)
  texts = SENTENCES[:12]
  script = ("import json, sys; from attn_jax.data import vocab; "
            f"print(json.dumps(vocab.load(sys.argv[1]).sample({texts!r}, 0.3, seed=5)))")
  root = conftest.ROOT
  env = dict(os.environ, PYTHONPATH=root, PYTHONHASHSEED="random")
  other = subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
  assert json.loads(other) == vocab.Vocab(model_bytes).sample(texts, 0.3, seed=5)


def test_load_or_train_trains_once_and_records_what_for(tmp_path):
  path = str(tmp_path / "spm.model")
  first = vocab.load_or_train(path, SENTENCES, 300, ("en", "de"))
  mtime = os.stat(path).st_mtime_ns
  second = vocab.load_or_train(path, ["completely different text"] * 50, 300, ("en", "de"))
  assert second.sha256 == first.sha256 and os.stat(path).st_mtime_ns == mtime
  assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # no temporary file left
  with open(vocab.record_path(path), encoding="utf-8") as f:
    record = json.load(f)
  assert record["vocab_size"] == 300 and record["languages"] == ["en", "de"]
  assert record["options"] == vocab.OPTIONS and record["sha256"] == first.sha256
  assert record["sentences"] == len(SENTENCES) and len(record["text_sha256"]) == 64


@pytest.mark.parametrize("size, languages, saying", [
    (310, ("en", "de"), r"vocab_size=300, languages en\+de.*asks for vocab_size=310"),
    (300, ("en", "fr"), r"languages en\+de.*asks for vocab_size=300, languages en\+fr"),
])
def test_a_stored_vocabulary_for_other_options_is_an_error_naming_both(tmp_path, size,
                                                                      languages, saying):
  path = str(tmp_path / "spm.model")
  vocab.load_or_train(path, SENTENCES, 300, ("en", "de"))
  with pytest.raises(vocab.VocabMismatchError, match=f"{path} was trained for .*{saying}"):
    vocab.load_or_train(path, SENTENCES, size, languages)


def test_a_vocabulary_without_record_is_checked_by_its_size(tmp_path):
  path = str(tmp_path / "spm.model")
  vocab.load_or_train(path, SENTENCES, 300, ("en",))
  os.remove(vocab.record_path(path))
  assert vocab.load_or_train(path, SENTENCES, 300, ("en",)).size == 300
  with pytest.raises(vocab.VocabMismatchError, match="vocab_size=300.*asks for vocab_size=320"):
    vocab.load_or_train(path, SENTENCES, 320, ("en",))


def test_a_replaced_model_file_no_longer_matches_its_record(tmp_path, model_bytes):
  path = str(tmp_path / "spm.model")
  vocab.load_or_train(path, SENTENCES[:20] * 5, 300, ("en",))
  with open(path, "wb") as f:
    f.write(model_bytes)
  with pytest.raises(vocab.VocabMismatchError, match="the file has changed since"):
    vocab.load_or_train(path, SENTENCES, 300, ("en",))


@pytest.mark.parametrize("content", [os.urandom(200), b""])
def test_a_file_that_is_not_a_model_is_one_error_naming_it(tmp_path, content):
  path = tmp_path / "spm.model"
  path.write_bytes(content)
  with pytest.raises(vocab.VocabError, match=f"^{path}: not a SentencePiece model"):
    vocab.load(str(path))


def test_a_vocab_size_sentencepiece_cannot_build_is_a_clear_error():
  with pytest.raises(ValueError, match=r"vocab_size: 50 does not work for this corpus: it must "
                                       r"be at least \d+ \(every distinct character"):
    vocab.train(SENTENCES, vocab_size=50)
