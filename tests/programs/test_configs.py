"""The flagfiles of experiments/configs: each names its program and that program accepts it."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest

import conftest

ROOT = conftest.ROOT
FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.flags")))

# Parses each flagfile with the flags of the program its header names, in a fresh
# process per program, and builds the frozen Config (and the comparison's plan).
_CHECK = r"""
import importlib, json, sys
from absl import flags
from experiments import config_flags
program, paths = sys.argv[1], sys.argv[2:]
module = importlib.import_module(program)
results = {}
for path in paths:
  flags.FLAGS.unparse_flags()
  try:
    workdir = ["--workdir=/nonexistent"] if "workdir" in flags.FLAGS else []
    flags.FLAGS(["prog", "--flagfile=" + path, *workdir])
    if program == "experiments.benchmark":
      module.benchmark_config()
    else:
      config_flags.build_config()
    if program == "experiments.compare":
      module._plan()
    results[path] = "ok"
  except Exception as e:  # reported per file by the test
    results[path] = f"{type(e).__name__}: {e}"
print(json.dumps(results))
"""


def _program(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    header = "".join(line for line in f if line.startswith("#"))
  found = re.search(r"Command:\s+python -m (experiments\.\w+)", header)
  return found.group(1) if found else ""


@pytest.fixture(scope="module")
def parsed() -> dict[str, str]:
  by_program: dict[str, list[str]] = {}
  for path in FLAGFILES:
    by_program.setdefault(_program(path), []).append(path)
  results = {}
  for program, paths in by_program.items():
    if not program:
      continue
    out = subprocess.run([sys.executable, "-c", _CHECK, program, *paths], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    results.update(json.loads(out.stdout.strip().splitlines()[-1]))
  return results


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_names_its_command_and_parses_into_a_valid_config(path, parsed):
  assert _program(path), f"{path}: the header has no '# Command:  python -m experiments.…' line"
  assert parsed[path] == "ok", f"{path}: {parsed[path]}"


def _includes(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [line.strip()[len("--flagfile="):] for line in f
            if line.strip().startswith("--flagfile=")]


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_includes_at_most_one_level_and_names_no_run_outputs(path):
  """A recipe may include one base flagfile, which includes nothing; run outputs (runs/...)
  belong on the command line of the documented workflow, not in a flagfile."""
  for included in _includes(path):
    base = os.path.join(ROOT, included)
    assert os.path.exists(base), f"{path}: includes {included}, which does not exist"
    assert not _includes(base), f"{path}: its base {included} includes another flagfile"
  with open(path, encoding="utf-8") as f:
    assert "runs/" not in f.read(), f"{path}: names a runs/ path"
