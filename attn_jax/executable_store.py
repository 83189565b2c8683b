"""Compiled executables kept on disk, so a program loads what an earlier one compiled.

Tracing, lowering and compiling a search costs seconds per shape even when XLA's own cache
holds the result; loading the serialized executable (jax.experimental.serialize_executable)
costs milliseconds. An entry is keyed by everything its code depends on: the backend, the
device kind, the JAX and jaxlib versions, the XLA flags, the library's own source code
(a change to any attn_jax file invalidates every entry), what was compiled (a caller's
description, e.g. the search and the model config) and the arguments' tree, shapes and
dtypes. A missing entry is compiled and stored; an entry that differs only in its
environment is reported once, with the fields that differ; an unreadable or damaged entry
is reported, ignored and replaced, so a store never changes a result, only the time to it.

Files: DIR/<sha256 of the key>.exe (the pickled executable) and .json (its key). Writes go
to a temporary name and are renamed, so concurrent programs see whole entries or none.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import sys
from typing import Any

import jax
import jaxlib
import numpy as np
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from attn_jax import atomic_write

COMPILED_DIR = "compiled"  # a workdir's store, beside its checkpoints
_SOURCE_ROOT = os.path.dirname(os.path.abspath(__file__))  # the attn_jax package


@functools.cache
def source_digest() -> str:
  """SHA-256 over the attn_jax package's Python files (paths and contents)."""
  digest = hashlib.sha256()
  for directory, subdirs, files in sorted(os.walk(_SOURCE_ROOT)):
    subdirs.sort()
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(directory, name)
      digest.update(os.path.relpath(path, _SOURCE_ROOT).encode())
      with open(path, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()


def environment() -> dict[str, str]:
  """What an executable depends on besides its own program and arguments."""
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device_kind": device.device_kind,
          "devices": str(len(jax.devices())), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "code": source_digest()}


def signature(args: tuple) -> str:
  """The arguments' tree structure, shapes and dtypes, as text."""
  leaves, tree = jax.tree.flatten(args)
  shapes = [f"{x.dtype if hasattr(x, 'dtype') else np.asarray(x).dtype}{list(np.shape(x))}"
            for x in leaves]
  return f"{tree} {' '.join(shapes)}"


class ExecutableStore:
  """The executables of one program description (`what`) under `directory`."""

  def __init__(self, directory: str, what: str):
    self.directory = directory
    self.what = what
    self.notes: list[str] = []  # one line each, printed by report()

  def _key(self, args: tuple) -> dict[str, str]:
    return {**environment(), "what": self.what, "args": signature(args)}

  def _path(self, key: dict[str, str], suffix: str) -> str:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return os.path.join(self.directory, name + suffix)

  def load(self, args: tuple) -> Any | None:
    """The stored executable for `args`, or None (then store() it once compiled)."""
    key = self._key(args)
    path = self._path(key, ".exe")
    if not os.path.exists(path):
      self._explain_miss(key)
      return None
    try:
      with open(path, "rb") as f:
        stored_key, payload, in_tree, out_tree = pickle.load(f)
      if stored_key != key:
        raise ValueError("its key is not the one its name stands for")
      return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception as e:  # pylint: disable=broad-except
      # Unpickling or loading damaged bytes can raise almost anything; the entry is
      # replaced by a fresh compilation.
      self.notes.append(f"warning: {path}: unreadable ({type(e).__name__}); compiling instead")
      return None

  def _explain_miss(self, key: dict[str, str]) -> None:
    """A note naming what differs, if an entry for the same program and arguments was
    compiled in another environment."""
    for other in self._keys():
      if other.get("what") == key["what"] and other.get("args") == key["args"]:
        fields = sorted(k for k in key if other.get(k) != key[k])
        note = (f"note: {self.directory}: stored searches were compiled with another "
                f"{', '.join(fields)}; compiling")
        if note not in self.notes:
          self.notes.append(note)
        return

  def _keys(self) -> list[dict[str, str]]:
    try:
      names = [n for n in os.listdir(self.directory) if n.endswith(".json")]
    except OSError:
      return []
    keys = []
    for name in names:
      try:
        with open(os.path.join(self.directory, name), encoding="utf-8") as f:
          keys.append(json.load(f))
      except (OSError, ValueError):
        continue
    return keys

  def save(self, args: tuple, compiled: Any) -> None:
    """Stores `compiled` (jit(...).lower(*args).compile()); a store that cannot be written
    (a read-only workdir, a full disk) is noted and left alone."""
    key = self._key(args)
    try:
      payload, in_tree, out_tree = serialize_executable.serialize(compiled)
      os.makedirs(self.directory, exist_ok=True)
      atomic_write.write_atomically(self._path(key, ".exe"),
                                    pickle.dumps((key, payload, in_tree, out_tree)))
      atomic_write.write_atomically(self._path(key, ".json"), json.dumps(key, indent=1))
    except (OSError, ValueError, NotImplementedError) as e:
      note = f"warning: {self.directory}: compiled searches not stored ({e})"
      if note not in self.notes:
        self.notes.append(note)

  def report(self) -> None:
    """Prints the notes gathered so far (stderr), each once (loads run on several threads)."""
    for note in dict.fromkeys(self.notes):
      print(note, file=sys.stderr, flush=True)
    self.notes.clear()


def compile_fresh(fn, args: tuple):
  """The jitted `fn` lowered for `args` and compiled by XLA itself, never taken from JAX's
  persistent compilation cache: an executable that cache returns serializes into an entry
  that fails once loaded (JaxRuntimeError NOT_FOUND: Function ... not found; JAX 0.10.2 on
  CPU), so every executable a store keeps is a fresh compilation. The cache is turned off
  for this compilation alone (it decides once per process whether it is used, hence the
  resets), and on again after it."""
  enabled = jax.config.jax_enable_compilation_cache
  jax_cache.reset_cache()
  jax.config.update("jax_enable_compilation_cache", False)
  try:
    return fn.lower(*args).compile()
  finally:
    jax.config.update("jax_enable_compilation_cache", enabled)
    jax_cache.reset_cache()


def for_workdir(workdir: str, what: str) -> ExecutableStore:
  """The store of `workdir`'s compiled programs described by `what`."""
  return ExecutableStore(os.path.join(workdir, COMPILED_DIR), what)
