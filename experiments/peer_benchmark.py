"""`benchmark --peers`: the PyTorch peer of the matched configuration, run in the same
invocation, each figure beside the project's and as a ratio.

Both sides train the same number of steps (--warmup plus --windows x --window_steps) on the
same data and SentencePiece model, then decode test_2016_flickr (1,000 sentences) greedily
and with beam --beam_size: the search alone, and the whole program (interpreter start to
exit) of a saved model. The project's whole program is `experiments.translate` on a
workdir `experiments.train` trained for those steps, run twice: the first run after
training and the second run of the workdir (which loads its compiled searches). The peer
(experiments/peers/torch_matched.py) runs in --peers_python: this interpreter when it can
import torch, else the peers' environment (experiments/peers/requirements-peers.txt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

from attn_jax.data import corpus

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "torch_matched.py")
DEFAULT_PEERS_VENV = os.path.join(os.path.dirname(os.path.dirname(PEER)), "..", ".venv_peers")
SPLIT = "test_2016_flickr"


class PeerError(RuntimeError):
  """The peer could not be run; the message says why (one line)."""


def peer_python(named: str) -> str:
  """The interpreter that runs the peer: `named`, else this one if it imports torch, else
  the peers' virtual environment next to the project."""
  if named:
    return named
  probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True,
                         check=False)
  if probe.returncode == 0:
    return sys.executable
  venv = os.path.normpath(os.path.join(DEFAULT_PEERS_VENV, "bin", "python"))
  if os.path.exists(venv):
    return venv
  raise PeerError(f"flag --peers: torch is not importable here and {venv} does not exist: "
                  f"install experiments/peers/requirements-peers.txt there, or name an "
                  f"interpreter with --peers_python")


def run_peer(python: str, data_dir: str, spm_model: str, warmup: int, windows: int,
             window_steps: int, beam_size: int, tmp: str) -> dict:
  """torch_matched.py's figures (its --json), trained and decoding as the project does."""
  out = os.path.join(tmp, "peer.json")
  command = [python, PEER, f"--data_dir={data_dir}", f"--spm_model={spm_model}",
             f"--warmup={warmup}", f"--windows={windows}", f"--window_steps={window_steps}",
             f"--beam_size={beam_size}", f"--decode_split={SPLIT}", f"--json={out}"]
  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise PeerError(f"the peer failed: {' '.join(command)}: "
                    f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def train_workdir(flagfile: str, workdir: str, steps: int, cache: str) -> None:
  """experiments.train of the benchmark's flags for `steps` steps into `workdir`."""
  command = [sys.executable, "-m", "experiments.train", f"--flagfile={flagfile}",
             f"--workdir={workdir}", f"--num_steps={steps}", f"--eval_every={steps}",
             f"--checkpoint_every={steps}", "--num_plots=0", "--warmup_steps=0",
             f"--compilation_cache={cache}"]
  proc = subprocess.run(command, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"experiments.train failed: {proc.stderr.strip()[-500:]}")


def source_file(data_dir: str, src_lang: str, tmp: str) -> tuple[str, int]:
  """test_2016_flickr's sources as a plain text file, and its line count."""
  lines = corpus.read_lines(corpus.split_path(data_dir, SPLIT, src_lang))
  path = os.path.join(tmp, f"{SPLIT}.{src_lang}")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))
  return path, len(lines)


def ours(results: dict, whole_program: Callable[[int], dict], sentences: int,
         beam_size: int) -> dict:
  """The project's side: training and search from the benchmark's own results, the whole
  program from `whole_program(beam)` (benchmark._whole_program), first and second run."""
  rows = results["decoding"]
  out = {"train_target_tokens_per_sec": results["training"]["target_tokens_per_sec"]["median"],
         "train_peak_rss_gib": results["training"]["peak_rss_gib"]}
  for name, beam in (("greedy", 1), (f"beam{beam_size}", beam_size)):
    out[f"search_{name}_sentences_per_sec"] = rows[f"{SPLIT}/{name}"]["sentences_per_sec"]
    out[f"{name}_tokens_per_output"] = rows[f"{SPLIT}/{name}"]["mean_output_len"]
    for run in ("first", "second"):
      whole = whole_program(beam)
      out[f"program_{name}_{run}_sentences_per_sec"] = sentences / whole["seconds"]
      out[f"program_{name}_{run}_stages"] = whole["stages"]
      out["decode_peak_rss_gib"] = max(out.get("decode_peak_rss_gib", 0.0),
                                       whole["peak_rss_gib"])
  return out


def theirs(peer: dict, beam_size: int) -> dict:
  """The peer's figures under the same names."""
  out = {"train_target_tokens_per_sec": peer["training"]["tgt_tokens_per_s"]["median"],
         "train_peak_rss_gib": peer["training"]["peak_rss_gib"],
         "decode_peak_rss_gib": max(peer["decoding"][name]["whole_program_peak_rss_gib"]
                                    for name in ("greedy", f"beam{beam_size}"))}
  for name in ("greedy", f"beam{beam_size}"):
    row = peer["decoding"][name]
    out[f"search_{name}_sentences_per_sec"] = row["search_sentences_per_s"]
    out[f"{name}_tokens_per_output"] = row["mean_output_len"]
    program = row["sentences"] / row["whole_program_seconds"]
    out[f"program_{name}_first_sentences_per_sec"] = program
    out[f"program_{name}_second_sentences_per_sec"] = program  # no compilation to keep
  return out


RATIO_KEYS = ("train_target_tokens_per_sec", "search_greedy_sentences_per_sec",
              "search_beam{b}_sentences_per_sec", "program_greedy_first_sentences_per_sec",
              "program_greedy_second_sentences_per_sec",
              "program_beam{b}_first_sentences_per_sec",
              "program_beam{b}_second_sentences_per_sec", "train_peak_rss_gib",
              "decode_peak_rss_gib")


def ratios(mine: dict, peer: dict, beam_size: int) -> dict:
  """ours / the peer's, per figure (speeds: above 1 is faster; RSS: below 1 is smaller)."""
  keys = [k.format(b=beam_size) for k in RATIO_KEYS]
  return {k: mine[k] / peer[k] for k in keys if peer.get(k)}


def table(mine: dict, peer: dict, ratio: dict) -> str:
  """The side-by-side lines the benchmark prints."""
  lines = [f"{'figure':44s} {'attn_jax':>10s} {'peer':>10s} {'ratio':>7s}"]
  for key, r in ratio.items():
    lines.append(f"{key:44s} {mine[key]:10,.2f} {peer[key]:10,.2f} {r:7.2f}")
  return "\n".join(lines)
