"""host_memory: freed heap pages leave the resident set on request (release_freed, and after
each call of a function wrapped by trimming), so does a library's machine code
(release_code_pages), and large buffers are reused without page faults (keep_freed_pages)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from attn_jax import memory
from attn_jax.perf import rss
from experiments import host_memory


def _rss_mib() -> float:
  with open("/proc/self/status", encoding="utf-8") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_resident_gib_is_the_current_resident_set():
  before = rss.resident_gib()
  assert abs(before * 1024 - _rss_mib()) < 5
  block = bytearray(256 << 20)  # 256 MiB, zero-filled: every page touched
  assert rss.resident_gib() - before > 0.24
  del block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_is_returned_to_the_os():
  blocks = [bytearray(65536) for _ in range(3_000)]  # ~190 MiB of heap chunks
  del blocks[::2]  # freed, but interleaved with live ones: free() alone keeps them
  before = _rss_mib()
  host_memory.release_freed()
  assert _rss_mib() < before - 50
  del blocks
  host_memory.release_freed()  # harmless when there is nothing to return


def test_trimming_returns_the_result_once_ready_and_then_trims():
  trims = []
  hooks = host_memory.GLIBC._replace(release_freed=lambda: trims.append(1))
  double = hooks.trimming(jax.jit(lambda x: 2 * x))
  out = double(jnp.arange(3))
  assert out.is_ready() and trims == [1]
  np.testing.assert_array_equal(out, [0, 2, 4])


_REUSE = r"""
import resource, sys, threading
from experiments import host_memory
if sys.argv[1] == "keep":
  assert host_memory.keep_freed_pages()
faults = []

def allocate_twice():  # on another thread, as XLA's runtime allocates
  for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 << 20)  # 64 MiB: above glibc's largest mmap threshold
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del block

thread = threading.Thread(target=allocate_twice)
thread.start()
thread.join()
print(faults[1])
"""


def _second_allocation_faults(mode: str) -> int:
  return int(conftest.run_python(_REUSE, mode)[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_pages_reuses_a_large_buffer_without_page_faults():
  """A thread's second 64 MiB buffer reuses the first's pages; by default it is mapped
  afresh and every page faults again."""
  assert _second_allocation_faults("default") > 10_000  # 16,384 pages of 4 KiB
  assert _second_allocation_faults("keep") < 1_000


_CODE = r"""
import os
import numpy as np
from experiments import host_memory

def rss_file_kib():
  with open("/proc/self/status", encoding="ascii") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("RssFile"))

a = np.arange(1.0, 65.0).reshape(8, 8)
expected = (a @ a).sum(), np.linalg.inv(a + 64 * np.eye(8)).sum()
before = rss_file_kib()
advised = host_memory.release_code_pages(os.path.dirname(np.__file__))
after = rss_file_kib()
again = (a @ a).sum(), np.linalg.inv(a + 64 * np.eye(8)).sum()  # its code maps back in
print(advised, before - after, int(again == expected))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps, madvise")
def test_release_code_pages_drops_a_librarys_code_which_still_runs():
  advised, dropped_kib, same = map(int, conftest.run_python(_CODE))
  assert advised > 0 and dropped_kib > 0 and same == 1


def test_the_library_default_neither_wraps_nor_trims():
  fn = jax.jit(lambda x: 2 * x)
  assert memory.NONE.trimming(fn) is fn
  assert memory.NONE.release_freed() is None and memory.NONE.release_compiler_code() is None

