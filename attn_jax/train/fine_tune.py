"""Fine-tuning: a run whose parameters start from another run's checkpoint.

With TrainConfig.init_from = W, a run that has no checkpoint of its own starts from
the parameters of W's checkpoint `init_checkpoint` (best, latest or a step) instead
of the initialiser. Everything else is that of a new run: step 0, a fresh optimizer
state (Adam's moments zero), the learning-rate schedule from its warm-up, the data
order and dropout keys of its own seeds. Uses: continued training with another
schedule or data (distilled targets, another domain), and ablations from one start.

Order (extending checkpoint.py's resume order): the run's own latest checkpoint
first; W is read only while there is none, so a resumed fine-tuning run continues
from its own checkpoints. The model must have W's parameter tree, leaf for leaf
(shapes and dtypes; options without parameters, such as dropout, may differ), and
the vocabulary must be W's: a new workdir gets copies of W's vocabulary files
before the data is read (adopt_vocabs).
"""

from __future__ import annotations

import os
import shutil
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attn_jax.config import Config, ConfigError, differing_fields, field_value
from attn_jax.data import pipeline, translation, vocab
from attn_jax.train import inference, steps


class Origin(NamedTuple):
  """Where a fine-tuned run's parameters came from (checkpoint metadata)."""
  workdir: str  # absolute path of W
  step: int  # W's checkpoint that was read


def adopt_vocabs(config: Config, workdir: str) -> None:
  """Copies init_from's vocabulary files into `workdir` where it has none yet (translation
  only); ConfigError if init_from lacks one this run's language options name."""
  d, source = config.data, config.train.init_from
  if not source or d.task != "translation":
    return
  names = set(translation.vocab_paths("", d.src_lang, d.tgt_lang, d.joint_vocab))
  os.makedirs(workdir, exist_ok=True)
  for name in sorted(names):
    target = os.path.join(workdir, name)
    if os.path.exists(target):
      continue
    if not os.path.isfile(os.path.join(source, name)):
      raise ConfigError(f"init_from: {source} has no vocabulary {name} for this run's "
                        f"languages ({d.src_lang}-{d.tgt_lang}, joint_vocab={d.joint_vocab})")
    shutil.copyfile(os.path.join(source, name), target)
    record = vocab.record_path(os.path.join(source, name))
    if os.path.isfile(record):
      shutil.copyfile(record, vocab.record_path(target))


def _describe(leaf) -> str:
  return "absent" if leaf is None else f"{list(leaf.shape)} {leaf.dtype}"


def _first_difference(want, got) -> str:
  """"path: got's shape and dtype, this model's" of the first leaf (in path order) whose
  shape or dtype differs or that only one tree has; "" if none does."""
  want_leaves = dict(jax.tree_util.tree_flatten_with_path(want)[0])
  got_leaves = dict(jax.tree_util.tree_flatten_with_path(got)[0])
  for path in sorted(set(want_leaves) | set(got_leaves), key=jax.tree_util.keystr):
    a, b = want_leaves.get(path), got_leaves.get(path)
    if a is None or b is None or (a.shape, a.dtype) != (b.shape, b.dtype):
      return f"{jax.tree_util.keystr(path)}: {_describe(b)}, this model {_describe(a)}"
  return ""


def start_state(state: steps.TrainState, config: Config, vocab_ids: dict | None,
                optimizer) -> tuple[steps.TrainState, Origin]:
  """A fresh `state` (step 0) with init_from's parameters in place of its own and the
  optimizer state initialised for them (on the default device: place it as the run does).

  Raises ConfigError (init_from) if the parameters or the vocabulary differ from this
  run's, and inference.ModelLoadError if W holds no usable checkpoint.
  """
  tc = config.train
  trained = inference.load(tc.init_from, tc.init_checkpoint, translation_only=False)
  where = f"{tc.init_from} (step {trained.step})"
  if pipeline.vocab_ids(trained.vocabs) != vocab_ids:
    raise ConfigError(f"init_from: {where} was trained with another vocabulary than this "
                      f"run's (sha256 {pipeline.vocab_ids(trained.vocabs)}, here {vocab_ids})")
  mismatch = _first_difference(state.params, trained.params)
  if mismatch:
    fields = [f for f in differing_fields(trained.config, config) if f.startswith("model.")]
    raise ConfigError(f"init_from: {where} has other parameters than this model ({mismatch}); "
                      "differing model options: " + (", ".join(
                          f"{f.split('.')[1]} (there {field_value(trained.config, f)!r}, here "
                          f"{field_value(config, f)!r})" for f in fields) or "none"))
  params = jax.tree.map(jnp.asarray, trained.params)  # [*param shape] each
  return (state._replace(params=params, opt_state=optimizer.init(params)),
          Origin(os.path.abspath(tc.init_from), trained.step))
