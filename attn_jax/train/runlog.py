"""The record of a run: metrics.jsonl, TensorBoard events and a console line per log step."""

from __future__ import annotations

import json
import os
import sys
import time


def _format_seconds(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def read_records(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


class RunLog:
  """Appends events to `workdir/metrics.jsonl` and `workdir/tensorboard/`.

  On resume from `start_step`, events logged after that step by the interrupted
  run are dropped, so the file reads as one uninterrupted run.
  """

  def __init__(self, workdir: str, start_step: int, num_steps: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [r for r in read_records(self.path) if r["step"] <= start_step]
    with open(self.path, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    # (imported here: the programs that only decode never load TensorBoard's writer)
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
    self._start_step, self._num_steps = start_step, num_steps
    self._start_time = time.time()

  def write(self, step: int, split: str, values: dict) -> dict:
    record = {"step": step, "split": split, "wall_time": round(time.time(), 3), **values}
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    for key, value in values.items():
      if isinstance(value, (int, float)):
        self._tb.add_scalar(f"{split}/{key}", value, step)
    return record

  def figure(self, tag: str, fig, step: int) -> None:
    self._tb.add_figure(tag, fig, step, close=True)

  def progress(self, step: int, values: dict) -> None:
    """One console line: step, loss, tokens/s, elapsed, ETA."""
    elapsed = time.time() - self._start_time
    done = step - self._start_step
    eta = elapsed / done * (self._num_steps - step) if done else 0.0
    rate = values.get("tokens_per_sec")
    rate = f"{rate:,.0f}" if rate is not None else "n/a (compiling)"
    print(f"step {step}/{self._num_steps} | loss {values['loss']:.4f} | "
          f"tok/s {rate} | elapsed {_format_seconds(elapsed)} | "
          f"eta {_format_seconds(eta)}", file=sys.stdout, flush=True)

  def close(self) -> None:
    self._tb.close()
