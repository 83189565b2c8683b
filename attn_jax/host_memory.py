"""Handing the heap that XLA's compiler freed back to the operating system.

A compilation allocates and frees hundreds of MB of small objects on the host.
glibc keeps freed heap pages resident, and the buffers of the steps that follow
do not fill them again (measured: the resident set only grows), so without a trim
every compilation's garbage stays in the resident set for the rest of the process.
On the matched model (bench_matched.flags, synthetic batches in 7 buckets, the
train step compiled for each, then 10 steps) a trim after each compilation takes
the peak RSS from 1.50 to 1.29 GiB.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
  """glibc's malloc_trim, or None where there is none (macOS, musl, Windows)."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    return ctypes.CDLL("libc.so.6").malloc_trim
  except (OSError, AttributeError):
    return None


def release_freed() -> None:
  """Returns the freed pages of the heap to the OS (a no-op without glibc)."""
  trim = _malloc_trim()
  if trim is not None:
    trim(0)
