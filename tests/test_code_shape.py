"""The code's shape: no function over 60 lines, blocks nested at most 3 deep within one.

Checked over the library, the programs and the peers' scripts. Depth counts the compound
statements (if/for/while/with/try/match, and nested defs) that enclose a line inside a
function; an `elif` stays at its `if`'s depth.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("attn_jax", "experiments") for p in (ROOT / d).rglob("*.py"))
MAX_LINES, MAX_DEPTH = 60, 3
_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
           ast.Match, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
if hasattr(ast, "TryStar"):
  _BLOCKS += (ast.TryStar,)


def _depth(node: ast.AST) -> int:
  """How deep blocks nest below `node` (0: a body of simple statements)."""
  deepest = 0
  for field, value in ast.iter_fields(node):
    children = value if isinstance(value, list) else [value]
    for child in children:
      if not isinstance(child, ast.AST):
        continue
      is_elif = (isinstance(node, ast.If) and field == "orelse" and len(children) == 1
                 and isinstance(child, ast.If))
      step = 1 if isinstance(child, _BLOCKS) and not is_elif else 0
      deepest = max(deepest, step + _depth(child))
  return deepest


def _functions(path: pathlib.Path):
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, _FUNCTIONS):
      yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node


def test_sources_found():
  assert len(SOURCES) > 40


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_are_short_and_shallow(path):
  long = [f"{name}: {node.end_lineno - node.lineno + 1} lines"
          for name, node in _functions(path) if node.end_lineno - node.lineno + 1 > MAX_LINES]
  deep = [f"{name}: depth {_depth(node)}"
          for name, node in _functions(path) if _depth(node) > MAX_DEPTH]
  assert not long + deep
