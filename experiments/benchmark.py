r"""Measures training and decoding speed, compilation and memory on this backend.

  python -m experiments.benchmark --data_dir=data/multi30k \
      [--flagfile=experiments/configs/bench_matched.flags] [--json=FILE] [--quick] \
      [--decode_workdir=W] [--profile] [--peers [--peers_python=PYTHON]]

Model and training flags are those of experiments.train. With --data_dir the
batches are real Multi30k (train for training; val and test_2016_flickr for
decoding); without it, synthetic batches of a Multi30k-like length distribution.
Decoding uses the trained model of --decode_workdir when given (its own config;
the whole `experiments.translate` program is then timed too), otherwise the
model as it is after the timed training steps (barely trained: its output lengths,
printed with each row, are not those of a trained model). --profile also times the
train step's parts one by one (attn_jax/perf/step_profile.py). --peers runs the PyTorch
peer of the matched configuration in the same invocation and prints every figure beside
the peer's and as a ratio (experiments/peer_benchmark.py; the JSON's "ratios").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import jax

from attn_jax import config as config_lib
from attn_jax.data import pipeline, translation
from attn_jax.evaluation import held_out
from attn_jax.perf import rss, step_profile, timing
from attn_jax.train import inference, seeds
from experiments import cli, config_flags, host_memory, peer_benchmark

FLAGS = flags.FLAGS

flags.DEFINE_string("json", "", "Also write the figures to this JSON file.")
flags.DEFINE_boolean("quick", False, "A short run (under a minute): fewer, shorter windows.")
flags.DEFINE_integer("windows", 5, "Timed training windows.", lower_bound=1)
flags.DEFINE_integer("window_steps", 40, "Training steps per timed window.", lower_bound=1)
flags.DEFINE_integer("warmup", 20, "Untimed training steps after compilation.", lower_bound=0)
flags.DEFINE_boolean("decode", True, "Also time decoding (--nodecode: training only).")
flags.DEFINE_string("decode_workdir", "", "A trained translation workdir to time decoding with.")
flags.DEFINE_integer("decode_batch_size", held_out.DECODE_BATCH_SIZE,
                     "Sentences decoded at once (translate's and evaluate's default); 0: the "
                     "training batch size.", lower_bound=0)
flags.DEFINE_integer("decode_passes", 1,
                     "Timed passes over each decoding set; the report gives the first and the "
                     "spread of all.", lower_bound=1)
flags.DEFINE_boolean("decode_weights", False,
                     "Keep the attention weights while decoding, as translate does for "
                     "--attention_plots.")
flags.DEFINE_integer("beam_size", 5, "Beam size of the beam-search figures.", lower_bound=2)
flags.DEFINE_float("length_penalty", 0.6, "GNMT length penalty of beam search.", lower_bound=0.0)
flags.DEFINE_float("mean_len", 14.0, "Synthetic data: mean source length in tokens.",
                   lower_bound=1.0)
flags.DEFINE_boolean("profile", False,
                     "Also time the train step's parts (encoder, decoder, output layer and "
                     "loss, update) one by one on batches of the most common width.")
flags.DEFINE_boolean("peers", False,
                     "Also run the PyTorch peer (experiments/peers/torch_matched.py) for as many "
                     "steps, and print each figure beside it and as a ratio (needs --data_dir).")
flags.DEFINE_string("peers_python", "",
                    "The interpreter that runs the peer; default: this one if it imports torch, "
                    "else .venv_peers/bin/python next to the project.")
flags.DEFINE_integer("matmul_size", 1024, "Side of the square matmul that measures the peak.",
                     lower_bound=1)

DECODE_SPLITS = ("val", "test_2016_flickr")

# Compile times are measured cold unless a cache directory is named (flag or environment).
FLAGS.set_default("compilation_cache", os.environ.get("JAX_COMPILATION_CACHE_DIR") or "none")


def _synthetic_max_len(config: config_lib.Config) -> int:
  """--quick keeps synthetic pairs within the narrowest bucket: one compilation per function."""
  return min(config.data.max_len, translation.DEFAULT_WIDTHS[0] - 1) if FLAGS.quick \
      else config.data.max_len


def _training_data(config: config_lib.Config, workdir: str):
  """(TrainData, vocabularies or None, a description of the data)."""
  if FLAGS.data_dir:
    run = pipeline.load(config.data, config.train.batch_size, workdir,
                        seeds.shuffle_seeds(config.data, config.train.num_seeds))
    return run.train, run.vocabs, run.summary
  count = 29_000 if not FLAGS.quick else 2_000
  train, _ = timing.synthetic_data(count, FLAGS.mean_len, config.model.src_vocab_size,
                                      _synthetic_max_len(config), config.train.batch_size,
                                      num_seeds=config.train.num_seeds)
  return train, None, f"synthetic, {count} pairs, mean source length {FLAGS.mean_len}"


def _decode_sets(config: config_lib.Config, vocabs, batch_size: int
                 ) -> dict[str, pipeline.EvalData]:
  """The evaluation sets decoding is timed on."""
  if FLAGS.data_dir and vocabs is not None:
    d = config.data
    sets = {}
    for split in DECODE_SPLITS[:1] if FLAGS.quick and not FLAGS.peers else DECODE_SPLITS:
      s = translation.load_split(FLAGS.data_dir, split, d.src_lang, d.tgt_lang, vocabs,
                                 pipeline.bucket_widths(d.max_len))
      sets[split] = pipeline.eval_data(s, batch_size)
    return sets
  count = 2_000 if not FLAGS.quick else 200
  _, synthetic = timing.synthetic_data(count * 29, FLAGS.mean_len,
                                         config.model.src_vocab_size, _synthetic_max_len(config),
                                         batch_size, seed=1)
  return {"synthetic": synthetic}


def _whole_program(workdir: str, source_path: str, beam_size: int, batch_size: int) -> dict:
  """Wall time, peak RSS (the program's own) and stage times (translate --timings) of
  `experiments.translate` on one file, as a subprocess; "other" is the wall time outside
  the stages: the interpreter's start before the program's first line, and its exit."""
  with tempfile.TemporaryDirectory() as tmp:
    timings = os.path.join(tmp, "timings.json")
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.translate", f"--workdir={workdir}",
         f"--input={source_path}", f"--output={os.path.join(tmp, 'out')}",
         f"--beam_size={beam_size}", f"--length_penalty={FLAGS.length_penalty}",
         f"--batch_size={batch_size}", f"--compilation_cache={FLAGS.compilation_cache}",
         f"--timings={timings}"],
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode:
      raise RuntimeError(f"experiments.translate failed: {proc.stderr.strip()[-500:]}")
    with open(timings, encoding="utf-8") as f:
      stages = json.load(f)
  stages["other"] = seconds - stages["total"]
  return {"seconds": seconds, "peak_rss_gib": stages.pop("peak_rss_gib"), "stages": stages}


def _decoding(config, params, vocabs, sets, model, batch_size: int, tmp: str) -> dict:
  """Greedy and beam figures per evaluation set; with a trained `model`, also the whole
  translate program (peak RSS: the largest child process so far)."""
  report = {}
  for split, ev in sets.items():
    for name, beam_size in (("greedy", 1), (f"beam{FLAGS.beam_size}", FLAGS.beam_size)):
      row, outputs = timing.time_decoding(config.model, params, ev, beam_size,
                                             FLAGS.length_penalty, FLAGS.decode_passes,
                                             FLAGS.decode_weights, host_memory.GLIBC)
      if ev.text is not None:
        scores, _ = held_out.translation_scores(outputs, ev.text.tgt, vocabs.tgt)
        row["bleu_tok_lc"] = scores["bleu_tok_lc"]
      if model is not None and ev.text is not None:
        row.update(_whole_program_row(split, ev, beam_size, batch_size, tmp))
      report[f"{split}/{name}"] = row
  return report


def _whole_program_row(split: str, ev, beam_size: int, batch_size: int, tmp: str) -> dict:
  """The whole translate program on the split's sources: seconds, sentences/s, peak RSS
  and the seconds of its stages."""
  source = os.path.join(tmp, f"{split}.src")
  with open(source, "w", encoding="utf-8") as f:
    f.write("".join(s + "\n" for s in ev.text.src))
  whole = _whole_program(FLAGS.decode_workdir, source, beam_size, batch_size)
  return {"program_seconds": whole["seconds"],
          "program_sentences_per_sec": ev.size / whole["seconds"],
          "program_peak_rss_gib": whole["peak_rss_gib"],
          "program_stages": whole["stages"]}


def benchmark_config() -> config_lib.Config:
  """The Config timed: Multi30k batches with --data_dir, else synthetic ones."""
  data_config = config_lib.DataConfig(task="translation" if FLAGS.data_dir else "reverse",
                                      vocab_size=FLAGS.vocab_size, max_len=FLAGS.max_len,
                                      src_lang=FLAGS.src_lang, tgt_lang=FLAGS.tgt_lang,
                                      joint_vocab=FLAGS.joint_vocab, data_dir=FLAGS.data_dir,
                                      seed=FLAGS.data_seed)
  return config_lib.Config(model=config_flags.model_config(), data=data_config,
                           train=config_flags.section(config_lib.TrainConfig, "train"))


def measure() -> dict:
  """Every figure of the benchmark, as one JSON-able dict."""
  if FLAGS.quick:
    FLAGS.windows, FLAGS.window_steps, FLAGS.warmup = 5, 3, 2
    FLAGS.matmul_size = min(FLAGS.matmul_size, 512)
  config = benchmark_config()
  if FLAGS.profile and config.train.num_seeds > 1:
    raise config_lib.ConfigError("profile: times one run's step; use it with --num_seeds=1")
  results: dict = {
      "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "jax": jax.__version__,
      "config": config.to_dict(), "quick": FLAGS.quick,
      "compilation_cache": FLAGS.compilation_cache}
  results["matmul_peak_flops_per_sec"] = timing.matmul_peak(FLAGS.matmul_size)
  results["matmul_size"] = FLAGS.matmul_size
  low = config.model.matmul_dtype != "float32"
  if low:  # the peak with the training's operand type too
    results["matmul_peak_low_flops_per_sec"] = timing.matmul_peak(
        FLAGS.matmul_size, dtype=config.model.matmul_dtype)
  imported = rss.resident_gib()
  with tempfile.TemporaryDirectory() as tmp:
    train, vocabs, description = _training_data(config, tmp)
    results["data"] = description
    loaded = rss.resident_gib()
    began = time.perf_counter()
    training, state = timing.time_training(config, train, FLAGS.windows, FLAGS.window_steps,
                                              FLAGS.warmup, host_memory.GLIBC)
    training["resident_gib_by_stage"] = {"imports and matmul peak": imported,
                                         "data loaded": loaded,
                                         **training["resident_gib_by_stage"]}
    training["seconds_incl_compile"] = time.perf_counter() - began
    training["peak_rss_gib"] = rss.peak_rss_gib()
    training["device_peak_gib"] = timing.device_memory_gib()
    training["matmul_utilisation"] = (training["flops_per_sec"]["median"]
                                      / results["matmul_peak_flops_per_sec"])
    if low:
      training["matmul_utilisation_low"] = (training["flops_per_sec"]["median"]
                                            / results["matmul_peak_low_flops_per_sec"])
    results["training"] = training
    if FLAGS.profile:
      batches = step_profile.common_width_batches(train, FLAGS.window_steps)
      results["profile"] = step_profile.profile(config, batches, jax.random.key(1),
                                                repeats=FLAGS.windows)
    if FLAGS.decode:
      results.update(_decoding_results(config, state, vocabs, tmp))
    if FLAGS.peers:
      results["peers"] = _peers(config, results, tmp)
      results["ratios"] = results["peers"]["ratios"]
  return results


def _peers(config: config_lib.Config, results: dict, tmp: str) -> dict:
  """The peer's figures beside ours (peer_benchmark): both trained for the same steps."""
  python = peer_benchmark.peer_python(FLAGS.peers_python)  # checked before measuring too
  steps = FLAGS.warmup + FLAGS.windows * FLAGS.window_steps
  flagfile = os.path.join(tmp, "flags.txt")
  with open(flagfile, "w", encoding="utf-8") as f:
    f.write(config_flags.flagfile_text("data_dir"))
  workdir = os.path.join(tmp, "run")
  peer_benchmark.train_workdir(flagfile, workdir, steps, FLAGS.compilation_cache)
  source, sentences = peer_benchmark.source_file(FLAGS.data_dir, config.data.src_lang, tmp)
  batch_size = results["decode_batch_size"]
  mine = peer_benchmark.ours(
      results, lambda beam: _whole_program(workdir, source, beam, batch_size), sentences,
      FLAGS.beam_size)
  d = config.data
  spm = translation.vocab_paths(tmp, d.src_lang, d.tgt_lang, d.joint_vocab)[0]
  raw = peer_benchmark.run_peer(python, FLAGS.data_dir, spm, FLAGS.warmup, FLAGS.windows,
                                FLAGS.window_steps, FLAGS.beam_size, tmp)
  peer = peer_benchmark.theirs(raw, FLAGS.beam_size)
  return {"python": python, "steps": steps, "ours": mine, "peer": peer,
          "ratios": peer_benchmark.ratios(mine, peer, FLAGS.beam_size), "peer_raw": raw}


def _decoding_results(config: config_lib.Config, state, vocabs, tmp: str) -> dict:
  """The decoding figures: of the model just timed (the first of stacked runs), or of
  --decode_workdir's trained model."""
  model = None
  params, decode_config, decode_vocabs = state.params, config, vocabs
  if config.train.num_seeds > 1:  # decode with the first of the runs trained together
    params = seeds.member(params, 0)
  if FLAGS.decode_workdir:
    model = inference.load(FLAGS.decode_workdir, "best")
    params, decode_config, decode_vocabs = model.params, model.config, model.vocabs
  results = {"decode_batch_size": FLAGS.decode_batch_size or config.train.batch_size,
             "decode_passes": FLAGS.decode_passes, "decode_weights": FLAGS.decode_weights}
  sets = _decode_sets(decode_config, decode_vocabs, results["decode_batch_size"])
  results["eval_step_compile"] = timing.compile_eval_step(
      decode_config.model, params, next(iter(sets.values())), host_memory.GLIBC)
  results["decoding_model"] = (f"{FLAGS.decode_workdir} (step {model.step})" if model
                               else "untrained (after the timed steps)")
  results["decoding"] = _decoding(decode_config, params, decode_vocabs, sets, model,
                                  results["decode_batch_size"], tmp)
  return results


def _fmt(x: float) -> str:
  return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def print_report(r: dict) -> None:
  t = r["training"]
  print(f"backend {r['backend']} ({r['machine']}), JAX {r['jax']}; data: {r['data']}; "
        f"compilation cache: {r['compilation_cache']}")
  dtype = r["config"]["model"].get("matmul_dtype", "float32")
  print(f"matmul peak ({r['matmul_size']}^3 float32): "
        f"{r['matmul_peak_flops_per_sec'] / 1e9:,.0f} GFLOP/s"
        + (f"; {dtype} operands: {r['matmul_peak_low_flops_per_sec'] / 1e9:,.0f} GFLOP/s"
           if dtype != "float32" else ""))
  num_seeds = r["config"]["train"]["num_seeds"]
  together = f", {num_seeds} seeds as one program (all counted)" if num_seeds > 1 else ""
  print(f"training, {len(t['windows'])} windows of {t['window_steps']} steps after "
        f"{t['warmup_steps']} warm-up steps{together}:")
  for name in ("target_tokens_per_sec", "tokens_per_sec", "sentences_per_sec"):
    s = t[name]
    print(f"  {name:24s} median {_fmt(s['median']):>8s}  (min {_fmt(s['min'])}, "
          f"max {_fmt(s['max'])})")
  print(f"  matmul FLOPs per target token {t['flops_per_target_token'] / 1e6:.1f} M; "
        f"{t['flops_per_sec']['median'] / 1e9:.1f} GFLOP/s = "
        f"{100 * t['matmul_utilisation']:.1f} % of the float32 matmul peak"
        + (f", {100 * t['matmul_utilisation_low']:.1f} % of the {dtype} one"
           if dtype != "float32" else ""))
  device = t["device_peak_gib"]
  print(f"  peak RSS {t['peak_rss_gib']:.2f} GiB"
        + (f", device peak {device:.2f} GiB" if device is not None else ""))
  stages = t["resident_gib_by_stage"]
  if all(v is not None for v in stages.values()):
    print("  resident memory after each stage, GiB: "
          + ", ".join(f"{name} {v:.2f}" for name, v in stages.items()))
  print(f"compilation: train step {t['compile']['count']} x, {t['compile']['seconds']:.1f} s")
  temp = t["compile"]["temp_mib_per_shape"]
  if any(v is not None for v in temp.values()):
    print("  XLA temporaries per step, MiB, by batch width: "
          + ", ".join(f"{w}: {v}" for w, v in temp.items()))
  if "profile" in r:
    p = r["profile"]
    step = p["ms_per_step"]["step"]
    print(f"the train step in parts, {p['steps']} batches of width {p['width']}:")
    for name, ms in p["ms_per_step"].items():
      print(f"  {name:14s} {ms:8.1f} ms/step  {100 * ms / step:5.1f} % of the step")
  if "decoding" in r:
    _print_decoding(r)


def _print_decoding(r: dict) -> None:
  """The decoding part of print_report: a line per evaluation set and search."""
  print(f"compilation: eval step {r['eval_step_compile']['count']} x, "
        f"{r['eval_step_compile']['seconds']:.1f} s")
  print(f"decoding with {r['decoding_model']}, batches of {r['decode_batch_size']}"
        f"{', attention weights kept' if r['decode_weights'] else ''}:")
  for name, row in r["decoding"].items():
    line = (f"  {name:28s} {row['sentences']:5d} sentences, search {_fmt(row['sentences_per_sec'])}"
            f" sent/s ({row['search_seconds']:.1f} s, {row['mean_output_len']:.1f} tokens per "
            f"output; compile {row['compile']['count']} x "
            f"{row['compile']['seconds']:.1f} s)")
    if r["decode_passes"] > 1:
      timed = row["passes"]
      line += (f", {r['decode_passes']} passes: median {_fmt(timed['median'])} "
               f"({_fmt(timed['min'])}-{_fmt(timed['max'])})")
    if "program_sentences_per_sec" in row:
      st = row["program_stages"]
      line += (f", whole program {_fmt(row['program_sentences_per_sec'])} sent/s "
               f"({row['program_seconds']:.1f} s: start-up {st['start_up']:.1f}, model "
               f"{st['load_model']:.1f}, compile {st['compilations']} x {st['compile']:.1f}, "
               f"search {st['search']:.1f}, other {st['other']:.1f}; peak RSS "
               f"{row['program_peak_rss_gib']:.2f} GiB)")
    if "bleu_tok_lc" in row:
      line += f", BLEU {row['bleu_tok_lc']:.2f}"
    print(line)


def main(argv):
  def body(watch):
    del watch  # its timed loops are short; the watchdog sees their frames move
    if FLAGS.peers and not (FLAGS.data_dir and FLAGS.decode and not FLAGS.decode_workdir):
      cli.fail("flag --peers: needs --data_dir, decoding, and no --decode_workdir (both "
               "sides decode models trained for the same steps here)")
    try:
      if FLAGS.peers:
        peer_benchmark.peer_python(FLAGS.peers_python)  # before minutes of measuring
      results = measure()
    except peer_benchmark.PeerError as e:
      cli.fail(str(e))
    print_report(results)
    if "peers" in results:
      p = results["peers"]
      print(f"beside the PyTorch peer ({p['python']}), both trained {p['steps']} steps:")
      print(peer_benchmark.table(p["ours"], p["peer"], p["ratios"]))
    if FLAGS.json:
      with open(FLAGS.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
  cli.run(body, argv, config_flags.ERROR_FLAG_NAMES, FLAGS.json,
          keep_freed_pages=FLAGS.keep_freed_pages)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
