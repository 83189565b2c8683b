r"""Fault drill: injects the faults a run meets and reports what each one cost.

  python -m experiments.fault_drill --workdir=/tmp/drill \
      [--data_dir=data/multi30k] [--pairs=2000] [--num_steps=120] [--seed=0]

A small En->De model on the first --pairs Multi30k pairs is trained once without
interruption (the reference), then again under each fault: `kill -9` at random
moments (a random time after a random checkpoint) and once while a checkpoint is
being written, SIGTERM, SIGINT, a second
writer, a damaged latest checkpoint (in train, translate and evaluate), a
damaged vocabulary, and a full disk (a 40 MiB tmpfs as the workdir; needs root,
skipped otherwise). Each interrupted run is then rerun with the same command.
A row gives the fault, what the program said (exit status and its last line),
what was lost (the checkpoints that existed before the fault and not after; the
steps redone since the last checkpoint), and whether the resumed run ends
bitwise equal to the reference (the final parameters' SHA-256 and the final
evaluation loss). The table is printed as markdown and written to
WORKDIR/drill.md with the raw rows in WORKDIR/drill.json.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, NamedTuple

from absl import app, flags
import jax
import numpy as np

from attn_jax import config as config_lib
from attn_jax.data import corpus
from attn_jax.train import checkpoint
from experiments import cli

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for the drill's runs and its report.")
flags.DEFINE_string("data_dir", config_lib.DEFAULT_DATA_DIR,
                    "Multi30k directory (train, val, test_2016_flickr in en and de).")
flags.DEFINE_integer("pairs", 2000, "Training pairs cut from the start of train.", lower_bound=100)
flags.DEFINE_integer("num_steps", 120, "Steps of every run.", lower_bound=20)
flags.DEFINE_integer("kills", 4, "kill -9 at this many random moments (besides mid-save).",
                     lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the random kill moments.")
flags.mark_flag_as_required("workdir")


class Row(NamedTuple):
  fault: str
  said: str  # exit status and the program's last stderr line
  lost: str  # checkpoints gone, steps redone
  resumed: str  # the rerun against the reference


# -- the runs -------------------------------------------------------------------------------

VOCAB = "spm.ende.model"
CHECKPOINT_EVERY = 10


class Drill:
  """The drill's data cut, its train command and the uninterrupted reference run."""

  def __init__(self, root: str, data_dir: str, pairs: int, num_steps: int):
    self.root = os.path.abspath(root)
    os.makedirs(self.root, exist_ok=True)
    self.data = _cut(data_dir, os.path.join(self.root, "data"), pairs)
    self.flags = [
        "--task=translation", f"--data_dir={self.data}", "--src_lang=en", "--tgt_lang=de",
        "--vocab_size=1000", "--embed_size=32", "--hidden_size=64", "--attention_size=32",
        "--batch_size=32", f"--num_steps={num_steps}", f"--checkpoint_every={CHECKPOINT_EVERY}",
        "--eval_every=40", "--log_every=10", "--keep_checkpoints=1000", "--num_plots=0"]
    self.reference = self.fresh("reference")
    began = time.perf_counter()
    proc = self.run(self.reference)
    self.reference_seconds = time.perf_counter() - began
    if proc.returncode:
      raise RuntimeError(f"the reference run failed: {said(proc.returncode, proc.stderr)}")
    self.digest, self.loss = final_state(self.reference)

  def describe(self) -> str:
    return (f"`python -m experiments.train {' '.join(self.flags)}` ({self.reference_seconds:.0f} s "
            f"uninterrupted; final parameters sha256 {self.digest[:12]}, eval loss {self.loss!r})")

  def fresh(self, name: str) -> str:
    workdir = os.path.join(self.root, name)
    shutil.rmtree(workdir, ignore_errors=True)
    return workdir

  def _command(self, workdir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *self.flags]

  def start(self, workdir: str) -> subprocess.Popen:
    return subprocess.Popen(self._command(workdir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  def run(self, workdir: str) -> subprocess.CompletedProcess:
    return subprocess.run(self._command(workdir), capture_output=True, text=True, check=False,
                          timeout=1200)

  def program(self, name: str, workdir: str) -> subprocess.CompletedProcess:
    """`name` on `workdir`: train resumes it; translate and evaluate read its latest."""
    if name == "train":
      return self.run(workdir)
    args = ([f"--input={os.path.join(self.data, 'test_2016_flickr.en')}",
             f"--output={os.path.join(workdir, 'test.de')}"] if name == "translate"
            else ["--split=test_2016_flickr"])
    return subprocess.run([sys.executable, "-m", f"experiments.{name}", f"--workdir={workdir}",
                           "--checkpoint=latest", "--beam_size=1", *args],
                          capture_output=True, text=True, check=False, timeout=1200)

  def compare(self, workdir: str) -> str:
    digest, loss = final_state(workdir)
    if (digest, loss) == (self.digest, self.loss):
      return "bitwise equal (parameters and final eval loss)"
    return f"DIFFERS: sha256 {digest[:12]}, eval loss {loss!r}"

  def resume_and_compare(self, workdir: str) -> str:
    proc = self.run(workdir)
    if proc.returncode:
      return f"rerun failed: {said(proc.returncode, proc.stderr)}"
    start = next((line.split("start step ")[1].split(" ")[0]
                  for line in proc.stdout.splitlines() if "start step " in line), "?")
    return f"resumed at step {start}: {self.compare(workdir)}"


def _cut(data_dir: str, target: str, pairs: int) -> str:
  """The first `pairs` training pairs and 200 lines of val and test_2016_flickr, as text."""
  os.makedirs(target, exist_ok=True)
  for split, count in (("train", pairs), ("val", 200), ("test_2016_flickr", 200)):
    for lang in ("en", "de"):
      lines = corpus.read_lines(corpus.split_path(data_dir, split, lang))[:count]
      with open(os.path.join(target, f"{split}.{lang}"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
  return target


def final_state(workdir: str) -> tuple[str, float | None]:
  """(SHA-256 of the latest checkpoint's parameters, the last evaluation's loss)."""
  reader = checkpoint.CheckpointReader(os.path.join(workdir, "checkpoints"))
  try:
    state, _ = reader.restore(reader.steps()[-1], None)
  finally:
    reader.close()
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state["params"])[0]:
    digest.update(jax.tree_util.keystr(path).encode() + np.asarray(leaf).tobytes())
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
  return digest.hexdigest(), evals[-1]["loss"] if evals else None


def checkpoints(workdir: str) -> set[int]:
  return set(checkpoint.saved_steps(os.path.join(workdir, "checkpoints")))


def saving(workdir: str) -> bool:
  """Whether a checkpoint is being written: Orbax's temporary step directory exists."""
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any("tmp" in n for n in os.listdir(directory))


def wait_for_checkpoint(proc: subprocess.Popen, workdir: str) -> None:
  deadline = time.time() + 600
  while not checkpoints(workdir):
    if time.time() > deadline or proc.poll() is not None:
      raise RuntimeError(f"{workdir}: no checkpoint appeared")
    time.sleep(0.1)


def said(returncode: int, stderr: str, fallback: str = "") -> str:
  """'exit N: <the last line of stderr>' (or `fallback` when that is empty)."""
  lines = [line for line in stderr.splitlines() if line.strip()]
  last = lines[-1] if lines else fallback
  return f"exit {returncode}" + (f": `{last[:180]}`" if last else "")


def lost(before: set[int], after: set[int], workdir: str, damaged: int | None = None) -> str:
  gone = sorted(before - after - ({damaged} if damaged is not None else set()))
  aside = sorted(n for n in os.listdir(os.path.join(workdir, "checkpoints"))
                 if "unreadable" in n) if os.path.isdir(os.path.join(workdir, "checkpoints")) else []
  text = f"newest checkpoint at the fault: {max(before) if before else 'none'}; " \
         f"checkpoints lost: {gone or 'none'}"
  return text + (f"; set aside: {', '.join(aside)}" if aside else "")


def damage_latest(workdir: str) -> int:
  """Overwrites the start of the latest checkpoint's array files with zeros; its step."""
  step = max(checkpoints(workdir))
  state = os.path.join(workdir, "checkpoints", str(step), "state")
  for path in glob.glob(os.path.join(state, "**", "d", "*"), recursive=True):
    with open(path, "r+b") as f:
      f.write(b"\0" * 64)
  return step


def fill(path: str) -> None:
  """Writes `path` until the disk is full."""
  with open(path, "wb") as f:
    try:
      while True:
        f.write(b"\0" * (1 << 20))
        f.flush()
    except OSError:
      pass


# -- the faults ------------------------------------------------------------------------------

def _interrupted(drill: Drill, name: str, when: Callable[[subprocess.Popen, str], None],
                 fault: str) -> Row:
  """A run interrupted by `when(process, workdir)`, then rerun to the end."""
  workdir = drill.fresh(name)
  proc = drill.start(workdir)
  when(proc, workdir)
  before = checkpoints(workdir)
  _, err = proc.communicate(timeout=600)
  after = checkpoints(workdir)
  return Row(fault, said(proc.returncode, err),
             lost(before, after, workdir), drill.resume_and_compare(workdir))


def _after_checkpoint(step: int, delay: float, act: Callable[[subprocess.Popen], None]):
  """An injection: `act` on the process `delay` seconds after checkpoint `step` appears."""
  def when(proc, workdir):
    while max(checkpoints(workdir), default=-1) < step:
      if proc.poll() is not None:
        return
      time.sleep(0.01)
    time.sleep(delay)
    act(proc)
  return when


def _kill_mid_save(after: int):
  """An injection: kill -9 as soon as a checkpoint after step `after` is being written
  (Orbax's temporary directory exists)."""
  def when(proc, workdir):
    _after_checkpoint(after, 0.0, lambda p: None)(proc, workdir)
    while proc.poll() is None:
      if saving(workdir):
        proc.kill()
        return
      time.sleep(0.001)
  return when


def interruptions(drill: Drill) -> list[Row]:
  rng = random.Random(FLAGS.seed)
  last = FLAGS.num_steps - CHECKPOINT_EVERY
  moments = sorted((rng.randrange(CHECKPOINT_EVERY, last + 1, CHECKPOINT_EVERY),
                    round(rng.uniform(0.0, 0.6), 2)) for _ in range(FLAGS.kills))
  rows = [_interrupted(drill, f"kill{i}", _after_checkpoint(step, delay, subprocess.Popen.kill),
                       f"`kill -9` {delay:.2f} s after checkpoint {step} appeared")
          for i, (step, delay) in enumerate(moments)]
  middle = FLAGS.num_steps // 2 // CHECKPOINT_EVERY * CHECKPOINT_EVERY
  rows.append(_interrupted(drill, "kill_save", _kill_mid_save(middle),
                           f"`kill -9` while the checkpoint after step {middle} is written"))
  for signum in (signal.SIGTERM, signal.SIGINT):
    name = signal.Signals(signum).name
    send = lambda p, signum=signum: p.send_signal(signum)
    rows.append(_interrupted(drill, name.lower(), _after_checkpoint(middle, 0.3, send),
                             f"{name} 0.30 s after checkpoint {middle} appeared"))
  return rows


def two_writers(drill: Drill) -> Row:
  workdir = drill.fresh("two_writers")
  first = drill.start(workdir)
  wait_for_checkpoint(first, workdir)
  second = drill.run(workdir)
  _, err = first.communicate(timeout=600)
  equal = drill.compare(workdir) if first.returncode == 0 else f"first run: {said(first.returncode, err)}"
  return Row("a second `train` on the busy workdir", said(second.returncode, second.stderr),
             "nothing (the first run went on)", equal)


def damaged_checkpoint(drill: Drill) -> list[Row]:
  rows = []
  for program in ("train", "translate", "evaluate"):
    workdir = drill.fresh(f"damaged_{program}")
    shutil.copytree(drill.reference, workdir, dirs_exist_ok=True)
    step = damage_latest(workdir)
    proc = drill.program(program, workdir)
    warning = next((line for line in proc.stderr.splitlines() + proc.stdout.splitlines()
                    if line.startswith("warning:")), "no warning")
    rows.append(Row(f"damaged arrays in the latest checkpoint (step {step}), `{program}`",
                    said(proc.returncode, proc.stderr, fallback=warning),
                    lost({step}, checkpoints(workdir), workdir,
                                    damaged=step),
                    drill.compare(workdir) if program == "train" else "–"))
  return rows


def damaged_vocabulary(drill: Drill) -> list[Row]:
  rows = []
  for program in ("train", "translate"):
    workdir = drill.fresh(f"vocab_{program}")
    shutil.copytree(drill.reference, workdir, dirs_exist_ok=True)
    with open(os.path.join(workdir, VOCAB), "wb") as f:
      f.write(os.urandom(4096))
    before = checkpoints(workdir)
    proc = drill.program(program, workdir)
    rows.append(Row(f"a vocabulary file of random bytes, `{program}`",
                    said(proc.returncode, proc.stderr),
                    lost(before, checkpoints(workdir), workdir), "–"))
  return rows


def full_disk(drill: Drill) -> Row:
  mount = os.path.join(FLAGS.workdir, "small_fs")
  os.makedirs(mount, exist_ok=True)
  if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs",
                                          mount], check=False).returncode:
    return Row("a full disk", "skipped: mounting a small tmpfs needs root", "–", "–")
  try:
    workdir = os.path.join(mount, "run")
    filler = os.path.join(mount, "filler")
    proc = drill.start(workdir)
    wait_for_checkpoint(proc, workdir)
    fill(filler)
    before = checkpoints(workdir)
    _, err = proc.communicate(timeout=600)
    after = checkpoints(workdir)
    os.remove(filler)
    row = Row("the disk fills up during training (40 MiB tmpfs)", said(proc.returncode, err),
              lost(before, after, workdir), drill.resume_and_compare(workdir))
  finally:
    subprocess.run(["umount", mount], check=False)
  return row


def report(rows: list[Row], drill: Drill) -> str:
  lines = [f"Reference: {drill.describe()}", "",
           "| fault | what the program said | lost | the rerun against the reference |",
           "|---|---|---|---|"]
  lines += [f"| {r.fault} | {r.said} | {r.lost} | {r.resumed} |" for r in rows]
  return "\n".join(lines) + "\n"


def main(argv):
  def body(watch):
    del watch
    drill = Drill(FLAGS.workdir, FLAGS.data_dir, FLAGS.pairs, FLAGS.num_steps)
    rows = interruptions(drill) + [two_writers(drill)] + damaged_checkpoint(drill)
    rows += damaged_vocabulary(drill) + [full_disk(drill)]
    text = report(rows, drill)
    print(text)
    with open(os.path.join(FLAGS.workdir, "drill.md"), "w", encoding="utf-8") as f:
      f.write(text)
    with open(os.path.join(FLAGS.workdir, "drill.json"), "w", encoding="utf-8") as f:
      json.dump([r._asdict() for r in rows], f, indent=1)
  cli.run(body, argv, path=FLAGS.workdir)


if __name__ == "__main__":
  sys.exit(app.run(main, flags_parser=cli.parse_flags))
