"""Files written whole or not at all: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, data: bytes | str) -> None:
  """Writes `data` (text as UTF-8) to `path` through a uniquely named temporary file in
  the same directory, renamed over `path`: a reader, or a concurrent writer of the same
  path, sees the old file or the new one, never a part; the temporary file is removed if
  the write fails."""
  directory, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
