"""Shared pytest setup: import path, the `slow` and `long` markers, a per-session XLA cache.

`long` tests (minutes each) are skipped unless pytest is given --long, which
keeps the default run (CI) within its time budget:

  python -m pytest -q tests --long -m long

Every test runs with tiny models (hidden 8, embed 8, vocab 8), on the CPU in
CI and unchanged on a GPU, with full-float32 matmuls on every backend. XLA
compilation dominates the run time, so each worker process of the session
(`-n 2`: pytest-xdist, whole files per worker) keeps one persistent
compilation cache (a fresh temporary directory, also handed to the
`experiments.*` subprocesses): a function compiled twice with the same
HLO, e.g. by two `train_and_evaluate` calls, compiles once. Set
ATTN_JAX_TEST_NO_CACHE=1 to run without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# The suite runs on worker processes (`-n 2`), each with its own JAX client: on a GPU none
# may take the default 75 % of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# Compiling small programs is most of the suite's time, and LLVM's optimisation passes
# (a third of each compilation) buy nothing for models this small: the suite compiles
# without them (subprocesses included) unless ATTN_JAX_TEST_OPTIMIZED=1.
if not os.environ.get("ATTN_JAX_TEST_OPTIMIZED"):
  os.environ["XLA_FLAGS"] = (
      f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip())

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # pylint: disable=g-import-not-at-top

# The references are the papers' equations in float64; on GPUs and TPUs XLA's
# default float32 matmul rounds its inputs (TF32, bfloat16 passes), so the
# tests ask for full float32 products there too (on a CPU this changes nothing).
jax.config.update("jax_default_matmul_precision", "highest")

_CACHE_DIR = None
if not os.environ.get("ATTN_JAX_TEST_NO_CACHE"):
  _CACHE_DIR = tempfile.mkdtemp(prefix="attn_jax_test_xla_cache_")
  jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def subprocess_env() -> dict[str, str]:
  """Environment for `python -m experiments.train` subprocesses."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  if _CACHE_DIR is not None:
    env["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def run_program(module: str, *args: str, stdin: bytes | None = None, timeout: float = 240,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """`python -m experiments.<module> ARGS` from the repository root; stdout/stderr as text.
  `env`: variables to set on top of subprocess_env() (XLA_FLAGS: added to the suite's)."""
  full_env = {**subprocess_env(), **(env or {})}
  if env and "XLA_FLAGS" in env:
    full_env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {env['XLA_FLAGS']}".strip()
  proc = subprocess.run([sys.executable, "-m", f"experiments.{module}", *args], cwd=ROOT,
                        env=full_env, input=stdin,
                        capture_output=True, timeout=timeout, check=False)
  return subprocess.CompletedProcess(proc.args, proc.returncode,
                                     proc.stdout.decode("utf-8", "replace"),
                                     proc.stderr.decode("utf-8", "replace"))


def run_python(script: str, *args: str) -> list[str]:
  """The words `script` prints, run by `python -c` in a fresh interpreter from the
  repository root (its allocator, mappings and JAX client untouched by this process);
  a failure raises."""
  out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True,
                       text=True, check=True)
  return out.stdout.split()


def error_line(proc: subprocess.CompletedProcess) -> str:
  """The one 'error: ...' line a program failed with; asserts exit 1 and no traceback."""
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
  return errors[0]


def snapshot(directory) -> dict[str, float]:
  """Modification time of every file under `directory`: a failed program must change none."""
  return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
          for d, _, files in os.walk(directory) for f in files}


def pytest_addoption(parser):
  parser.addoption("--long", action="store_true", help="also run the tests marked long")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: trains a tiny model end to end (seconds, not milliseconds)")
  config.addinivalue_line(
      "markers", "long: minutes each; skipped unless --long is given (not in CI)")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--long"):
    return
  skip = pytest.mark.skip(reason="long: run with --long")
  for item in items:
    if "long" in item.keywords:
      item.add_marker(skip)


def pytest_unconfigure(config):
  del config
  if _CACHE_DIR is not None:
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture
def rng():
  """A NumPy generator with a fixed seed, fresh for every test."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return np.random.default_rng(1234)
