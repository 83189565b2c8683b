"""Parallel text reading: strict UTF-8, \\n-only lines, counts, empty files and pairs."""

from __future__ import annotations

import gzip
import os

import pytest

import conftest

from attn_jax.data import corpus

MULTI30K = os.path.join(conftest.ROOT, "..",
                        "shared", "data", "multi30k")


def _write(path, data: bytes, gz: bool = False) -> str:
  path = str(path) + (".gz" if gz else "")
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(data)
  return path


def test_reads_plain_and_gzip_alike(tmp_path):
  _write(tmp_path / "train.en", "a b\nc\n".encode())
  _write(tmp_path / "train.de", "x y\nz\n".encode(), gz=True)
  text = corpus.read_parallel(str(tmp_path), "train", "en", "de", drop_empty=True)
  assert text == corpus.ParallelText(["a b", "c"], ["x y", "z"], 0)


def test_plain_file_is_preferred_over_gzip(tmp_path):
  _write(tmp_path / "val.en", b"plain\n")
  _write(tmp_path / "val.en", b"zipped\n", gz=True)
  assert corpus.split_path(str(tmp_path), "val", "en") == str(tmp_path / "val.en")


@pytest.mark.parametrize("raw, lines", [
    (b"a\nb\n", ["a", "b"]),
    (b"a\nb", ["a", "b"]),  # no final newline
    (b"a\n\nb\n", ["a", "", "b"]),  # an empty line is a line
    (b"a\rb\nc\r\n", ["a\rb", "c\r"]),  # only \n splits
    ("a\u2028b\u0085c\n".encode(), ["a\u2028b\u0085c"]),  # Unicode separators stay inside
    (b"\n", [""]),
])
def test_lines_split_on_newline_only(raw, lines):
  assert corpus.decode_lines(raw, "f") == lines


def test_invalid_utf8_names_file_and_line(tmp_path):
  path = _write(tmp_path / "train.en", b"fine\nalso fine\nbad \xff byte\n")
  with pytest.raises(corpus.CorpusError, match=r"train\.en:3: invalid UTF-8 \(byte 0xff"):
    corpus.read_lines(path)


def test_invalid_utf8_inside_gzip_names_file_and_line(tmp_path):
  path = _write(tmp_path / "train.de", b"ok\n\xc3\x28\n", gz=True)
  with pytest.raises(corpus.CorpusError, match=r"train\.de\.gz:2: invalid UTF-8"):
    corpus.read_lines(path)


def test_empty_file_is_an_error(tmp_path):
  path = _write(tmp_path / "train.en", b"")
  with pytest.raises(corpus.CorpusError, match=r"train\.en: empty file"):
    corpus.read_lines(path)


def test_corrupt_gzip_is_one_clear_error(tmp_path):
  path = str(tmp_path / "train.en.gz")
  with open(path, "wb") as f:
    f.write(b"not gzip at all")
  with pytest.raises(corpus.CorpusError, match=r"train\.en\.gz: "):
    corpus.read_lines(path)


def test_line_count_mismatch_gives_both_counts(tmp_path):
  _write(tmp_path / "train.en", b"a\nb\nc\n")
  _write(tmp_path / "train.de", b"x\ny\n")
  with pytest.raises(corpus.CorpusError) as e:
    corpus.read_parallel(str(tmp_path), "train", "en", "de", drop_empty=True)
  message = str(e.value)
  assert "train.en has 3 lines" in message and "train.de has 2" in message
  assert "\n" not in message


def test_missing_split_names_the_path(tmp_path):
  _write(tmp_path / "train.en", b"a\n")
  with pytest.raises(corpus.CorpusError, match=r"test\.en\[\.gz\]: no such file"):
    corpus.read_parallel(str(tmp_path), "test", "en", "de", drop_empty=False)


def test_empty_pairs_dropped_and_counted_in_training_only(tmp_path):
  _write(tmp_path / "train.en", b"a\n\nc\n  \ne\n")
  _write(tmp_path / "train.de", b"x\ny\n\nw\nv\n")
  train = corpus.read_parallel(str(tmp_path), "train", "en", "de", drop_empty=True)
  assert train == corpus.ParallelText(["a", "e"], ["x", "v"], 3)
  kept = corpus.read_parallel(str(tmp_path), "train", "en", "de", drop_empty=False)
  assert len(kept.src) == 5 and kept.dropped_empty == 0


def test_languages_lists_the_codes_of_a_split(tmp_path):
  for name in ("train.en", "train.de.gz", "val.fr", "README.md"):
    _write(tmp_path / name, b"a\n")
  assert corpus.languages(str(tmp_path)) == ["de", "en"]
  with pytest.raises(corpus.CorpusError, match="no such directory"):
    corpus.languages(str(tmp_path / "missing"))


@pytest.mark.skipif(not os.path.isdir(MULTI30K), reason="Multi30k not present")
def test_multi30k_splits_are_line_aligned():
  for split, n in (("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)):
    text = corpus.read_parallel(MULTI30K, split, "en", "de", drop_empty=split == "train")
    assert len(text.src) == len(text.tgt) == n
  assert corpus.languages(MULTI30K) == ["de", "en", "fr"]


def test_distilled_targets_pair_with_the_source_lines_and_drop_empty_pairs(tmp_path):
  _write(tmp_path / "train.en", b"a\nb\n\nd\n", gz=True)
  teacher = _write(tmp_path / "teacher.de", b"A\n\nC\nD\n")
  text = corpus.read_distilled(str(tmp_path), "train", "en", teacher)
  assert text == corpus.ParallelText(["a", "d"], ["A", "D"], 2)
  both = corpus.joined(corpus.ParallelText(["x"], ["X"], 1), text)
  assert both == corpus.ParallelText(["x", "a", "d"], ["X", "A", "D"], 3)


def test_distilled_targets_of_another_length_name_both_files(tmp_path):
  _write(tmp_path / "train.en", b"a\nb\nc\n")
  teacher = _write(tmp_path / "teacher.de", b"A\nB\n")
  with pytest.raises(corpus.CorpusError) as e:
    corpus.read_distilled(str(tmp_path), "train", "en", teacher)
  assert str(e.value) == f"{tmp_path / 'train.en'} has 3 lines but {teacher} has 2"
