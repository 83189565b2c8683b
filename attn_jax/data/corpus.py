"""Parallel text on disk: `<split>.<lang>` or `<split>.<lang>.gz`, read strictly.

* Strict UTF-8: an invalid byte stops reading with `file:line`.
* Lines are split on "\\n" only (a "\\r" or U+2028 inside a line stays in it); a
  final newline does not start another line.
* An empty file is an error; source and target must have equal line counts.
* Empty training pairs (either side blank) are dropped and counted; evaluation
  splits keep every line so outputs stay line-aligned with inputs.

Every failure is a CorpusError whose message is one line naming the file.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

from attn_jax.config import DEFAULT_DATA_DIR


class CorpusError(ValueError):
  """Unreadable or inconsistent parallel text; the message names the file."""


class ParallelText(NamedTuple):
  src: list[str]  # [pairs] source sentences, raw text
  tgt: list[str]  # [pairs] target sentences, raw text
  dropped_empty: int  # pairs dropped because a side was blank (training splits only)


def split_path(data_dir: str, split: str, lang: str) -> str:
  """The file holding `split` in `lang`: plain text preferred over .gz."""
  base = os.path.join(data_dir, f"{split}.{lang}")
  for path in (base, base + ".gz"):
    if os.path.isfile(path):
      return path
  raise CorpusError(f"{base}[.gz]: no such file")


def _files(data_dir: str) -> list[tuple[str, str]]:
  """(split, language) of every `<split>.<lang>[.gz]` file in data_dir."""
  if not os.path.isdir(data_dir):
    hint = ("; `python -m experiments.download` puts Multi30k there"
            if os.path.normpath(data_dir) == DEFAULT_DATA_DIR else "")
    raise CorpusError(f"{data_dir}: no such directory{hint}")
  found = []
  for name in os.listdir(data_dir):
    stem = name[:-3] if name.endswith(".gz") else name
    split, _, lang = stem.rpartition(".")
    if split and lang:
      found.append((split, lang))
  return found


def languages(data_dir: str, split: str = "train") -> list[str]:
  """Language codes that have a `split` file in data_dir, e.g. ['de', 'en', 'fr']."""
  return sorted({lang for s, lang in _files(data_dir) if s == split})


def splits(data_dir: str, src_lang: str, tgt_lang: str) -> list[str]:
  """The splits that have both a `src_lang` and a `tgt_lang` file in data_dir, sorted."""
  files = set(_files(data_dir))
  return sorted({s for s, _ in files if (s, src_lang) in files and (s, tgt_lang) in files})


def decode_lines(raw: bytes, path: str) -> list[str]:
  """Strict UTF-8 lines of `raw`, split on b"\\n" only; errors name `path:line`."""
  if not raw:
    raise CorpusError(f"{path}: empty file")
  chunks = raw.split(b"\n")
  if chunks[-1] == b"":
    chunks.pop()  # the final newline ends the last line
  lines = []
  for number, chunk in enumerate(chunks, start=1):
    try:
      lines.append(chunk.decode("utf-8"))
    except UnicodeDecodeError as e:
      raise CorpusError(f"{path}:{number}: invalid UTF-8 (byte 0x{chunk[e.start]:02x} at "
                        f"column {e.start + 1})") from None
  return lines


def read_lines(path: str) -> list[str]:
  """The lines of a text file, gzipped or not."""
  try:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise CorpusError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
  return decode_lines(raw, path)


def read_parallel(data_dir: str, split: str, src_lang: str, tgt_lang: str,
                  drop_empty: bool) -> ParallelText:
  """Reads one split of a parallel corpus; see the module docstring for the checks."""
  src_path = split_path(data_dir, split, src_lang)
  tgt_path = split_path(data_dir, split, tgt_lang)
  src, tgt = read_lines(src_path), read_lines(tgt_path)
  return _paired(src, tgt, src_path, tgt_path, drop_empty)


def read_distilled(data_dir: str, split: str, src_lang: str, path: str) -> ParallelText:
  """The source lines of `split` paired with the lines of `path`, a teacher's translations
  of them line for line (sequence-level knowledge distillation); empty pairs dropped."""
  src_path = split_path(data_dir, split, src_lang)
  return _paired(read_lines(src_path), read_lines(path), src_path, path, drop_empty=True)


def _paired(src: list[str], tgt: list[str], src_path: str, tgt_path: str,
            drop_empty: bool) -> ParallelText:
  """The pairs of two line-aligned files; their line counts must match."""
  if len(src) != len(tgt):
    raise CorpusError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
  if not drop_empty:
    return ParallelText(src, tgt, 0)
  keep = [i for i, (s, t) in enumerate(zip(src, tgt)) if s.strip() and t.strip()]
  return ParallelText([src[i] for i in keep], [tgt[i] for i in keep], len(src) - len(keep))


def joined(a: ParallelText, b: ParallelText) -> ParallelText:
  """The pairs of `a` followed by those of `b`."""
  return ParallelText(a.src + b.src, a.tgt + b.tgt, a.dropped_empty + b.dropped_empty)
