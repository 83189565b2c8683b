"""The process's resident memory, for the benchmark's figures."""

from __future__ import annotations

import os


def resident_gib() -> float | None:
  """This process's resident memory now (not its peak), from /proc; None off Linux."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      pages = int(f.read().split()[1])
  except (OSError, ValueError, IndexError):
    return None
  return pages * os.sysconf("SC_PAGE_SIZE") / 2**30
