"""host_memory.release_freed: freed heap pages leave the resident set."""

from __future__ import annotations

import sys

import pytest

from attn_jax import host_memory


def _rss_mib() -> float:
  with open("/proc/self/status", encoding="utf-8") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_is_returned_to_the_os():
  blocks = [bytearray(65536) for _ in range(3_000)]  # ~190 MiB of heap chunks
  del blocks[::2]  # freed, but interleaved with live ones: free() alone keeps them
  before = _rss_mib()
  host_memory.release_freed()
  assert _rss_mib() < before - 50
  del blocks
  host_memory.release_freed()  # harmless when there is nothing to return
