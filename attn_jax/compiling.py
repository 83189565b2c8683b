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

import os
import time
from concurrent import futures
from typing import Any, Callable, NamedTuple

from attn_jax import executable_store, memory as memory_lib
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
  compilation and after the last. With a `store`, the executables it holds for the same
  arguments are loaded instead, several at once (deserializing leaves the interpreter
  free: 6 searches in 0.17-0.19 s on 2 threads against 0.30-0.44 s one by one), each
  timed as an equal share of that; one compiled here (by XLA, not from JAX's persistent
  cache: executable_store.compile_fresh) is added to the store."""
  by_shape, seconds, temp = {}, {}, {}
  shapes = sorted(args_by_shape)
  if store is not None and shapes:
    began = time.perf_counter()
    with futures.ThreadPoolExecutor(min(len(shapes), os.cpu_count() or 1)) as pool:
      found = dict(zip(shapes, pool.map(lambda s: store.load(args_by_shape[s]), shapes)))
    by_shape = {s: e for s, e in found.items() if e is not None}
    seconds = dict.fromkeys(by_shape, (time.perf_counter() - began) / max(len(by_shape), 1))
  loaded = frozenset(by_shape)
  for shape in shapes:
    if shape not in loaded:
      began = time.perf_counter()
      args = args_by_shape[shape]
      if store is not None:
        by_shape[shape] = executable_store.compile_fresh(fn, args)
        store.save(args, by_shape[shape])
      else:
        by_shape[shape] = fn.lower(*args).compile()
      seconds[shape] = time.perf_counter() - began
    temp[shape] = _temp_bytes(by_shape[shape])
    memory.release_freed()
  if len(loaded) < len(shapes):
    memory.release_compiler_code()
  if store is not None:
    store.report()
  return Compiled({s: by_shape[s] for s in shapes}, {s: seconds[s] for s in shapes},
                  temp, loaded)
