"""Host-memory hooks: what a program may do to keep the host's resident memory down.

The library calls them where memory is left behind: after each compilation
(`release_freed`: the compiler's freed heap), once a batch of compilations is done
(`release_compiler_code`: the compiler's code pages), and around the calls that leave
buffers in a kept heap (`trimming`: evaluation steps and searches). The library's
default, NONE, does nothing; the programs install glibc's versions
(experiments/host_memory.py), where the figures that motivate them are recorded.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax


def _nothing() -> None:
  return None


class HostMemory(NamedTuple):
  release_freed: Callable[[], object] = _nothing  # hand the heap's freed pages back
  release_compiler_code: Callable[[], object] = _nothing  # hand the compiler's code back
  trims_calls: bool = False  # whether `trimming` wraps calls (else it returns them as they are)

  def trimming(self, fn: Callable) -> Callable:
    """`fn`, each call waited for and then followed by release_freed (for calls off the hot
    path, such as evaluation's); `fn` itself when this does not trim calls."""
    if not self.trims_calls:
      return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
      out = jax.block_until_ready(fn(*args, **kwargs))
      self.release_freed()
      return out
    return call


NONE = HostMemory()
