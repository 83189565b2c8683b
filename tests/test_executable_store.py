"""executable_store.py: round trips, keys, damaged and unwritable stores; never a changed result."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

import conftest
from attn_jax import compiling, executable_store
from attn_jax.executable_store import ExecutableStore


@jax.jit
def _f(p, x):
  return jnp.tanh(x @ p["w"]), jnp.sum(x)


def _args(rows=2):
  return ({"w": jnp.full((3, 3), 0.5)}, jnp.arange(rows * 3, dtype=jnp.float32).reshape(rows, 3))


def test_saved_executable_loads_and_computes_the_same(tmp_path):
  store = ExecutableStore(str(tmp_path / "c"), "f")
  args = _args()
  assert store.load(args) is None and not store.notes  # nothing stored: no note
  store.save(args, _f.lower(*args).compile())
  loaded = ExecutableStore(str(tmp_path / "c"), "f").load(args)
  assert loaded is not None
  for a, b in zip(loaded(*args), _f(*args)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert ExecutableStore(str(tmp_path / "c"), "f").load(_args(rows=4)) is None  # other shape
  assert ExecutableStore(str(tmp_path / "c"), "g").load(args) is None  # other program


def test_compile_per_shape_loads_what_an_earlier_call_stored(tmp_path):
  shapes = {2: _args(2), 4: _args(4)}
  first = compiling.compile_per_shape(_f, shapes, store=ExecutableStore(str(tmp_path), "f"))
  second = compiling.compile_per_shape(_f, shapes, store=ExecutableStore(str(tmp_path), "f"))
  assert first.loaded == frozenset() and second.loaded == {2, 4}
  for rows, args in shapes.items():
    np.testing.assert_array_equal(np.asarray(second.by_shape[rows](*args)[0]),
                                  np.asarray(first.by_shape[rows](*args)[0]))


def test_another_environment_is_named_and_compiled(tmp_path, monkeypatch, capsys):
  args = _args()
  ExecutableStore(str(tmp_path), "f").save(args, _f.lower(*args).compile())
  real = executable_store.environment()
  monkeypatch.setattr(executable_store, "environment",
                      lambda: {**real, "jax": "0.0.1", "device_kind": "other"})
  store = ExecutableStore(str(tmp_path), "f")
  compiled = compiling.compile_per_shape(_f, {2: args}, store=store)
  assert compiled.loaded == frozenset()
  assert capsys.readouterr().err == (f"note: {tmp_path}: stored searches were compiled with "
                                     f"another device_kind, jax; compiling\n")


def test_damaged_entry_is_reported_ignored_and_replaced(tmp_path, capsys):
  args = _args()
  ExecutableStore(str(tmp_path), "f").save(args, _f.lower(*args).compile())
  (exe,) = [n for n in os.listdir(tmp_path) if n.endswith(".exe")]
  data = (tmp_path / exe).read_bytes()
  (tmp_path / exe).write_bytes(data[:len(data) // 2])  # cut short
  compiled = compiling.compile_per_shape(_f, {2: args}, store=ExecutableStore(str(tmp_path), "f"))
  assert compiled.loaded == frozenset()
  err = capsys.readouterr().err
  assert err.startswith(f"warning: {tmp_path / exe}: unreadable (") and err.endswith(
      "compiling instead\n")
  np.testing.assert_array_equal(np.asarray(compiled.by_shape[2](*args)[0]),
                                np.asarray(_f(*args)[0]))
  again = compiling.compile_per_shape(_f, {2: args}, store=ExecutableStore(str(tmp_path), "f"))
  assert again.loaded == {2}  # the fresh compilation replaced it


def test_unwritable_store_is_a_note_not_an_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  store = ExecutableStore(str(blocker / "c"), "f")  # under a file: cannot be created
  args = _args()
  compiled = compiling.compile_per_shape(_f, {2: args}, store=store)
  assert 2 in compiled.by_shape


def test_source_digest_covers_the_library_code():
  digest = executable_store.source_digest()
  assert len(digest) == 64 and executable_store.environment()["code"] == digest


_STORE_THROUGH_A_WARM_CACHE = """
import sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from attn_jax import compiling
from attn_jax.executable_store import ExecutableStore
f = jax.jit(lambda x, y: jnp.where(x > y, jnp.tanh(x) @ y.T, y @ x.T))
args = (np.ones((4, 4), np.float32), np.eye(4, dtype=np.float32))
f(args[0][:2, :2], args[1][:2, :2]).block_until_ready()  # the process uses the cache first
compiled = compiling.compile_per_shape(f, {4: args}, store=ExecutableStore(sys.argv[2], "f"))
print(sorted(compiled.loaded), f"{float(np.asarray(compiled.by_shape[4](*args)).sum()):.5f}")
"""


def test_an_entry_stored_while_the_compilation_cache_holds_the_program_runs_once_loaded(
    tmp_path):
  """Three fresh interpreters sharing JAX's persistent compilation cache, each using it before
  it compiles for a store: the first fills it (and store A), the second, whose compilation
  the cache could answer, fills store B, the third loads B's entry and runs it. An
  executable taken from the cache would store an entry that fails once loaded (NOT_FOUND:
  Function ... not found)."""
  cache, a, b = (str(tmp_path / name) for name in ("xla", "a", "b"))
  first = conftest.run_python(_STORE_THROUGH_A_WARM_CACHE, cache, a)
  assert conftest.run_python(_STORE_THROUGH_A_WARM_CACHE, cache, b) == first == ["[]", "13.13913"]
  assert conftest.run_python(_STORE_THROUGH_A_WARM_CACHE, cache, b) == ["[4]", "13.13913"]
