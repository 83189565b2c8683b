"""The process's resident memory, now and at its peak, for the figures of the benchmark
and of translate's timings."""

from __future__ import annotations

import os
import resource


def resident_gib() -> float | None:
  """This process's resident memory now (not its peak), from /proc; None off Linux."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      pages = int(f.read().split()[1])
  except (OSError, ValueError, IndexError):
    return None
  return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def peak_rss_gib() -> float:
  """Peak resident memory of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
