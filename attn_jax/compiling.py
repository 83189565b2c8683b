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
from attn_jax import executable_store
from attn_jax.executable_store import ExecutableStore


class Compiled(NamedTuple):
  by_shape: dict[Any, Any]  # training batch width, or a decode call's (rows, width) -> executable
  seconds: dict[Any, float]  # the same keys -> compile (or load) time
  temp_bytes: dict[Any, int | None]  # the same keys -> XLA's temporary buffers per call
  loaded: frozenset = frozenset()  # the keys whose executable came from a store


def _temp_bytes(executable) -> int | None:
  """The bytes of temporaries XLA allocates for one call, where the backend says."""
  try:
    return int(executable.memory_analysis().temp_size_in_bytes)
  except (AttributeError, NotImplementedError, RuntimeError, TypeError):
    return None


def compile_per_shape(fn: Callable, args_by_shape: dict[Any, tuple],
                      memory: memory_lib.HostMemory = memory_lib.NONE,
                      store: ExecutableStore | None = None) -> Compiled:
  """Lowers and compiles the jitted `fn` once per key of args_by_shape (a batch width or
  shape), timing each. The arguments are only read for their shapes, types and
  placement (a donated argument is not consumed). `memory`'s hooks run after each
  compilation and after the last. With a `store`, an executable it holds for the same
  arguments is loaded instead, and one compiled here (by XLA, not from JAX's persistent
  cache: executable_store.compile_fresh) is added to it."""
  by_shape, seconds, temp, loaded = {}, {}, {}, set()
  for shape, args in sorted(args_by_shape.items()):
    began = time.perf_counter()
    executable = store.load(args) if store is not None else None
    if executable is not None:
      loaded.add(shape)
    elif store is not None:
      executable = executable_store.compile_fresh(fn, args)
      store.save(args, executable)
    else:
      executable = fn.lower(*args).compile()
    by_shape[shape] = executable
    seconds[shape] = time.perf_counter() - began
    temp[shape] = _temp_bytes(executable)
    memory.release_freed()
  if len(loaded) < len(args_by_shape):
    memory.release_compiler_code()
  if store is not None:
    store.report()
  return Compiled(by_shape, seconds, temp, frozenset(loaded))
