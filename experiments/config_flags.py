"""The flags that build a Config, shared by the programs that train or time a model.

Importing this module defines them; `build_config` turns the parsed values into
the frozen Config (ConfigError names the bad option).
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from attn_jax import config as config_lib
from attn_jax.model import attention, cells, output_loss, precision

FLAGS = flags.FLAGS

# Model.
flags.DEFINE_enum("cell", "gru", list(cells.CELLS), "Recurrent cell.")
flags.DEFINE_integer("embed_size", 64, "Embedding size.", lower_bound=1)
flags.DEFINE_integer("hidden_size", 128,
                     "Hidden size of the decoder, and of each encoder direction unless "
                     "--encoder_size is set.", lower_bound=1)
flags.DEFINE_integer("encoder_size", 0,
                     "Hidden size of each encoder direction; 0: --hidden_size. (dot and "
                     "scaled_dot attention need encoder states of the decoder's size.)",
                     lower_bound=0)
flags.DEFINE_integer("encoder_layers", 1, "Stacked encoder layers.", lower_bound=1)
flags.DEFINE_boolean("bidirectional", True, "Bidirectional encoder.")
flags.DEFINE_enum("attention", "additive", list(attention.VARIANTS), "Attention variant.")
flags.DEFINE_integer("attention_size", 128, "Inner size of additive attention.", lower_bound=1)
flags.DEFINE_integer("window", 10, "Local attention: half-width D of the window [p_t-D, p_t+D].",
                     lower_bound=1)
flags.DEFINE_integer("location_positions", 128,
                     "Location attention: source positions scored (later ones get weight 0).",
                     lower_bound=1)
flags.DEFINE_enum("query", "current", list(config_lib.QUERIES),
                  "Attend with h_{t-1} (previous, Bahdanau) or h_t (current, Luong).")
flags.DEFINE_boolean("input_feeding", True, "Feed the last attentional vector/context to the cell.")
flags.DEFINE_boolean("layer_norm", False, "Layer-normalise the RNN cells' projections.")
flags.DEFINE_enum("matmul_dtype", "float32", list(precision.MATMUL_DTYPES),
                  "Operands of the products with the kernels, attention's excepted (float32 "
                  "accumulation; parameters, gradients and everything else stay float32): "
                  "bfloat16 for GPUs, TPUs and CPUs with bfloat16 instructions.")
flags.DEFINE_float("dropout", 0.0, "Dropout rate.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_boolean("tie_embeddings", False,
                     "Output layer shares the target embedding (needs embed_size == hidden_size).")
# Data.
flags.DEFINE_enum("task", "reverse", list(config_lib.TASKS),
                  "A synthetic task, or translation of --data_dir.")
flags.DEFINE_integer("vocab_size", 20,
                     "Vocabulary size including PAD, BOS, EOS (translation: SentencePiece pieces).",
                     lower_bound=4)
flags.DEFINE_integer("min_len", 1, "Shortest source sequence (synthetic tasks).", lower_bound=1)
flags.DEFINE_integer("max_len", 30,
                     "Longest source sequence; translation: longest training pair in subwords.",
                     lower_bound=1)
flags.DEFINE_string("data_dir", "", "Translation: directory of <split>.<lang>[.gz] files.")
flags.DEFINE_string("src_lang", "en", "Translation: source language code.")
flags.DEFINE_string("tgt_lang", "de", "Translation: target language code.")
flags.DEFINE_boolean("joint_vocab", True, "Translation: one vocabulary for both languages.")
flags.DEFINE_float("subword_dropout", 0.0,
                   "Translation: BPE-dropout rate of the training pairs, each epoch's sentences "
                   "segmented afresh (Provilkov et al. 2020 use 0.1); 0: one fixed segmentation.",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_string("distilled_targets", "",
                    "Translation: a file of a teacher's translations of the training split's "
                    "source lines, line for line (experiments.translate of train.<src_lang>); "
                    "its pairs join the training pairs (sequence-level knowledge distillation).")
flags.DEFINE_integer("train_size", 50_000, "Training examples.", lower_bound=1)
flags.DEFINE_integer("eval_size", 1_000, "Held-out evaluation examples.", lower_bound=1)
flags.DEFINE_integer("data_seed", 0, "Seed of the generated data and of the training order.")
flags.DEFINE_integer("shuffle_seed", None,
                     "Reshuffles the training order: synthetic tasks take it from this seed; "
                     "translation reshuffles the pairs within each length bucket, keeping the "
                     "sequence of batch widths of --data_seed.")
# Training.
flags.DEFINE_integer("num_steps", 1_200, "Training steps.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Sentences per batch.", lower_bound=1)
flags.DEFINE_float("learning_rate", 3e-3, "Adam's peak learning rate.", lower_bound=0.0)
flags.DEFINE_integer("warmup_steps", 200, "Linear warm-up steps.", lower_bound=0)
flags.DEFINE_integer("cooldown_steps", 300, "Final steps over which the rate decays to 0.",
                     lower_bound=0)
flags.DEFINE_float("clip_norm", 1.0, "Global gradient-norm clip; 0 disables.", lower_bound=0.0)
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("seed", 0, "Seed of initialisation and dropout.")
flags.DEFINE_integer("log_every", 100, "Steps between log lines.", lower_bound=1)
flags.DEFINE_integer("eval_every", 400, "Steps between evaluations.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 400, "Steps between checkpoints.", lower_bound=1)
flags.DEFINE_integer("keep_checkpoints", 2, "Latest checkpoints kept (the best is kept too).",
                     lower_bound=1)
flags.DEFINE_integer("num_plots", 3, "Evaluation examples drawn as attention heatmaps.",
                     lower_bound=0)
flags.DEFINE_integer("bleu_every", 0,
                     "Translation: steps between validation BLEU scores; 0: at every evaluation.",
                     lower_bound=0)
flags.DEFINE_integer("max_nonfinite_steps", 10,
                     "Stop after this many consecutive steps with a non-finite loss or gradient "
                     "(their updates are skipped).", lower_bound=1)
flags.DEFINE_integer("num_seeds", 1,
                     "Train this many independent models as one vmapped program: model k "
                     "has --seed=seed+k and --shuffle_seed=shuffle_seed+k (data_seed+k if "
                     "unset; model 0 keeps the flags' own order).",
                     lower_bound=1)
flags.DEFINE_integer("loss_chunk_rows", output_loss.DEFAULT_CHUNK_ROWS,
                     "Target positions (batch x time) whose logits the loss forms at once; "
                     "0: all. Speed and memory only: results are the same up to float "
                     "rounding.", lower_bound=0)
flags.DEFINE_integer("remat_width", 0,
                     "Batches at least this wide (source or target subwords + EOS) recompute "
                     "the encoder's and decoder's time steps in the backward pass instead of "
                     "keeping their activations: less peak memory, more time on those batches; "
                     "0: never. Results are the same up to float rounding.", lower_bound=0)
flags.DEFINE_integer("patience", 0,
                     "Stop after this many scored evaluations without a new best; 0: never.",
                     lower_bound=0)
flags.DEFINE_integer("plateau_patience", 0,
                     "Multiply the learning rate by --plateau_factor after this many scored "
                     "evaluations without a new best, and again after as many more (on top of "
                     "the schedule); 0: never.", lower_bound=0)
flags.DEFINE_float("plateau_factor", 0.5, "Learning-rate factor on a plateau (--plateau_patience).",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("init_from", "",
                    "Fine-tuning: a training workdir whose parameters (at --init_checkpoint) "
                    "start this run, with a fresh optimizer state and schedule; its vocabulary "
                    "is copied into a new workdir. The model must have the same parameter "
                    "shapes. Read only until this run saves its first checkpoint.")
flags.DEFINE_string("init_checkpoint", "best",
                    "Checkpoint of --init_from: best (by validation score), latest, or a step.")

# Process (not part of the Config).
flags.DEFINE_boolean(
    "keep_freed_pages", True,
    "glibc: allocate from one heap and keep freed memory mapped, so each training step "
    "reuses the pages of the last instead of faulting in fresh ones (on the matched model "
    "about 16 % faster on CPU, compilation slower, and the resident set keeps its "
    "high-water mark).")

# Config field -> flag name, where they differ.
FLAG_NAMES = {"data.seed": "data_seed"}
# ConfigError names a field without its section: the flag to name instead.
ERROR_FLAG_NAMES = {field.split(".")[1]: flag for field, flag in FLAG_NAMES.items()}


def section(cls, name: str, **extra):
  """The config dataclass `cls` (section `name`) from the parsed flags; `extra` fields given."""
  names = {f.name for f in dataclasses.fields(cls)} - set(extra)
  values = {n: getattr(FLAGS, FLAG_NAMES.get(f"{name}.{n}", n)) for n in names}
  return cls(**values, **extra)


def model_config() -> config_lib.ModelConfig:
  return section(config_lib.ModelConfig, "model", src_vocab_size=FLAGS.vocab_size,
                 tgt_vocab_size=FLAGS.vocab_size)


def build_config() -> config_lib.Config:
  """The frozen Config from the parsed flags; ConfigError names the bad option."""
  data = section(config_lib.DataConfig, "data")
  return config_lib.Config(model=model_config(), data=data,
                           train=section(config_lib.TrainConfig, "train"))


def flagfile_text(*extra: str) -> str:
  """These flags and the `extra` ones, as a flagfile that re-runs the experiment."""
  defined = FLAGS.get_flags_for_module(sys.modules[__name__]) + [FLAGS[n] for n in extra]
  return "".join(f.serialize() + "\n" for f in sorted(defined, key=lambda f: f.name))
