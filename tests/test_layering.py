"""The library's packages are layers: each imports only the layers below it."""

from __future__ import annotations

import ast
import os

import conftest

# Lowest first; "" is the top-level leaves (config, batch, memory, compiling).
LAYERS = ("", "model", "data", "decode", "evaluation", "train", "study", "perf")


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def _imports(path: str) -> set[str]:
  """The attn_jax modules that the file at `path` imports."""
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attn_jax"):
      package = node.module in ("attn_jax",) + tuple(f"attn_jax.{p}" for p in LAYERS if p)
      found |= {f"{node.module}.{a.name}" if package else node.module for a in node.names}
  return found


def _upward_imports() -> set[tuple[str, str]]:
  library = os.path.join(conftest.ROOT, "attn_jax")
  edges = set()
  for directory, _, files in os.walk(library):
    for name in (f for f in files if f.endswith(".py")):
      path = os.path.join(directory, name)
      module = os.path.relpath(path[:-3], conftest.ROOT).replace(os.sep, ".")
      module = module.removesuffix(".__init__")
      edges |= {(module, target) for target in _imports(path)
                if LAYERS.index(_layer(target)) > LAYERS.index(_layer(module))}
  return edges


def test_each_package_imports_only_the_layers_below_it():
  assert not _upward_imports()


def test_the_train_step_module_does_not_import_decoding():
  path = os.path.join(conftest.ROOT, "attn_jax", "train", "steps.py")
  assert not {m for m in _imports(path) if m.startswith("attn_jax.decode")}


def test_no_library_module_calls_libc():
  """glibc's calls (malloc_trim, mallopt, madvise) are the programs' (experiments/host_memory)."""
  library = os.path.join(conftest.ROOT, "attn_jax")
  for directory, _, files in os.walk(library):
    for name in (f for f in files if f.endswith(".py")):
      with open(os.path.join(directory, name), encoding="utf-8") as f:
        assert "ctypes" not in f.read(), os.path.join(directory, name)

