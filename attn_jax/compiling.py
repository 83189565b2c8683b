"""Ahead-of-time compilation of a jitted step, once per batch shape.

`jit(f).lower(*args).compile()` for every shape a program will meet, before it runs
any of them: the compile time is measured apart from running, the number of
compilations is known (one per length bucket), and the compiler's working memory is
spent before
the steps' buffers exist rather than on top of them. The heap the compiler freed is
handed back after each compilation, and its code once all are done, by the hooks a program
installs (memory.HostMemory).
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

from attn_jax import memory as memory_lib


class Compiled(NamedTuple):
  by_shape: dict[Any, Any]  # training batch width, or a decode call's (rows, width) -> executable
  seconds: dict[Any, float]  # the same keys -> compile time
  temp_bytes: dict[Any, int | None]  # the same keys -> XLA's temporary buffers per call


def _temp_bytes(executable) -> int | None:
  """The bytes of temporaries XLA allocates for one call, where the backend says."""
  try:
    return int(executable.memory_analysis().temp_size_in_bytes)
  except (AttributeError, NotImplementedError, RuntimeError, TypeError):
    return None


def compile_per_shape(fn: Callable, args_by_shape: dict[Any, tuple],
                      memory: memory_lib.HostMemory = memory_lib.NONE) -> Compiled:
  """Lowers and compiles the jitted `fn` once per key of args_by_shape (a batch width or
  shape), timing each. The arguments are only read for their shapes, types and
  placement (a donated argument is not consumed). `memory`'s hooks run after each
  compilation and after the last."""
  by_shape, seconds, temp = {}, {}, {}
  for shape, args in sorted(args_by_shape.items()):
    began = time.perf_counter()
    by_shape[shape] = fn.lower(*args).compile()
    seconds[shape] = time.perf_counter() - began
    temp[shape] = _temp_bytes(by_shape[shape])
    memory.release_freed()
  memory.release_compiler_code()
  return Compiled(by_shape, seconds, temp)
