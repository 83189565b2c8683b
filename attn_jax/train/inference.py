"""A trained translation model read back from its workdir, and text through it.

`load` restores one checkpoint for decoding: the config comes from the
checkpoint's own metadata (not from flags), the vocabularies from the workdir,
whose SHA-256 must match the ones the checkpoint was trained with, and the
state is restored into `jax.eval_shape` targets of that config (checkpoint.py) on
one device, whatever the number of devices it was trained on.
"""

from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

import jax

from attn_jax import memory as memory_lib
from attn_jax.config import Config, ModelConfig, is_checkpoint_choice
from attn_jax.data import pipeline, translation
from attn_jax.evaluation import held_out
from attn_jax.evaluation.held_out import Example
from attn_jax.train import parallel, resume, seeds, steps
from attn_jax.train.checkpoint import Checkpointer

class ModelLoadError(ValueError):
  """The workdir holds no usable model; the message names the directory or file."""


class Member(NamedTuple):
  """Where one model of an ensemble came from."""
  workdir: str
  step: int  # its checkpoint's training step
  seed_index: int | None  # which of a num_seeds > 1 workdir's models; None if one


class Trained(NamedTuple):
  config: Config  # of the model; of the first member for an ensemble
  params: dict | tuple[dict, ...]  # an ensemble's: one tree per member
  vocabs: translation.Vocabs | None  # None for a synthetic task
  step: int  # the training step of the restored checkpoint (the first member's)
  seed_index: int | None = None  # which of a num_seeds > 1 workdir's models; None if one
  num_seeds: int = 1  # the models the workdir holds
  averaged_steps: tuple[int, ...] = ()  # the checkpoints whose parameters were averaged
  members: tuple[Member, ...] = ()  # an ensemble's models (load_ensemble); () for one model
  member_configs: tuple[Config, ...] = ()  # and their configs, in the same order

  @property
  def search_config(self) -> ModelConfig | tuple[ModelConfig, ...]:
    """What searches.make_search takes: the model config, or an ensemble's tuple of them."""
    if self.members:
      return tuple(c.model for c in self.member_configs)
    return self.config.model


def _choose_step(ckpt: Checkpointer, which: str, directory: str) -> int:
  if not is_checkpoint_choice(which):
    raise ModelLoadError(f"--checkpoint: expected best, latest or a step number, got {which!r}")
  saved = ckpt.steps()
  if not saved:
    raise ModelLoadError(f"{directory}: no checkpoints")
  if which == "latest":
    return saved[-1]
  if which == "best":
    best = ckpt.best_step()
    if best is None:
      raise ModelLoadError(f"{directory}: no checkpoint has a validation score yet; "
                           f"use --checkpoint=latest (steps saved: {saved})")
    return best
  if int(which) not in saved:
    raise ModelLoadError(f"{directory}: no checkpoint at step {which} (steps saved: {saved})")
  return int(which)


def _averaging_steps(saved: list[int], step: int, average: int, directory: str) -> list[int]:
  """The `average` latest saved steps up to and including `step`."""
  upto = [s for s in saved if s <= step]
  if len(upto) < average:
    raise ModelLoadError(f"--average: {directory} holds {len(upto)} checkpoint(s) up to step "
                         f"{step} ({upto}), fewer than {average}")
  return upto[-average:]


def load(workdir: str, which: str = "best", seed_index: int = 0,
         translation_only: bool = True, average: int = 1) -> Trained:
  """The translation model of `workdir` (see _restore); `seed_index` picks one of the
  models of a num_seeds > 1 workdir."""
  return _restore(workdir, which, seed_index, translation_only, average)[0]


def _restore(workdir: str, which: str, seed_index: int | None, translation_only: bool,
             average: int) -> list[Trained]:
  """The translation model(s) of `workdir`, as a list, at checkpoint `which` (best, latest or a step);
  with translation_only False, a synthetic task's model too (its vocabs None).

  A workdir that trained num_seeds > 1 models holds them stacked; `seed_index` picks
  one, whose config is then its stand-alone one (seeds.member_config), and None takes
  each of them from the one restore (in seed order). With
  average > 1 the parameters are the element-wise mean of those of the `average`
  latest checkpoints up to the chosen one (checkpoint averaging, as Vaswani et al.
  2017 sec. 6.1; the model config of each must be the same). Raises ModelLoadError
  or resume.IncompatibleCheckpointError, naming the problem.
  """
  if average < 1:
    raise ModelLoadError(f"--average: expected 1 or more checkpoints, got {average}")
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise ModelLoadError(f"{directory}: no such directory (not a training workdir?)")
  ckpt = Checkpointer(directory)
  try:
    step = _choose_step(ckpt, which, directory)
    averaged = _averaging_steps(ckpt.steps(), step, average, directory)
    metadata = {s: ckpt.metadata(s) for s in averaged}
    config = Config.from_dict(metadata[step]["config"])
    d = config.data
    vocabs = None
    if d.task == "translation":
      try:
        vocabs = translation.load_vocabs(workdir, d.src_lang, d.tgt_lang, d.joint_vocab)
      except OSError as e:
        raise ModelLoadError(f"{e.filename}: {e.strerror}") from None
    elif translation_only:
      raise ModelLoadError(f"{workdir}: trained on the {d.task} task, not translation")
    num_seeds = config.train.num_seeds
    if seed_index is not None and not 0 <= seed_index < num_seeds:
      raise ModelLoadError(f"--seed_index: {workdir} holds {num_seeds} model(s), "
                           f"so 0 to {num_seeds - 1}; got {seed_index}")
    optimizer = steps.make_optimizer(config.train)
    target = parallel.Placement(jax.devices()[:1]).restore_target(
        resume.abstract_state(config, optimizer))
    params = []
    for s in averaged:
      resume.check_vocab(metadata[s], pipeline.vocab_ids(vocabs), directory, s)
      other = Config.from_dict(metadata[s]["config"])
      if (other.model, other.train.num_seeds) != (config.model, num_seeds):
        raise ModelLoadError(f"--average: {directory}/{s} was trained with another model "
                             f"config than step {step}")
      params.append(ckpt.restore(s, target)[0]["params"])
  finally:
    ckpt.close()
  # [*param shape]: the mean over the averaged checkpoints, one leaf at a time.
  mean = params[0] if len(params) == 1 else jax.tree.map(
      lambda *leaves: sum(leaves[1:], leaves[0]) / len(leaves), *params)
  if num_seeds == 1:
    return [Trained(config, mean, vocabs, step, averaged_steps=tuple(averaged))]
  return [Trained(seeds.member_config(config, k), seeds.member(mean, k), vocabs, step, k,
                  num_seeds, tuple(averaged))
          for k in (range(num_seeds) if seed_index is None else [seed_index])]


def load_ensemble(workdirs: list[str], which: str = "best", average: int = 1,
                  translation_only: bool = True) -> Trained:
  """Every model of `workdirs` (each seed of a num_seeds > 1 workdir), each at its own
  checkpoint `which`, as one ensemble (ensemble.py) decoding with the first's data options.

  Raises ModelLoadError naming a workdir that cannot join: another language pair or
  other vocabularies than the first.
  """
  loaded: list[Trained] = []
  members: list[Member] = []
  for workdir in workdirs:
    models = _restore(workdir, which, None, translation_only, average)  # every seed's
    loaded += models
    members += [Member(workdir, t.step, t.seed_index) for t in models]
  head = loaded[0]
  pair = lambda t: (t.config.data.src_lang, t.config.data.tgt_lang)
  for member, t in zip(members, loaded):
    if pair(t) != pair(head):
      raise ModelLoadError(f"--ensemble: {member.workdir} translates {'-'.join(pair(t))}, "
                           f"{members[0].workdir} {'-'.join(pair(head))}")
    if pipeline.vocab_ids(t.vocabs) != pipeline.vocab_ids(head.vocabs):
      raise ModelLoadError(f"--ensemble: {member.workdir} was trained with other vocabularies "
                           f"than {members[0].workdir}")
  return head._replace(params=tuple(t.params for t in loaded), seed_index=None, num_seeds=1,
                       members=tuple(members),
                       member_configs=tuple(t.config for t in loaded))


def translate(trained: Trained, sentences: list[str], search: Callable, batch_size: int,
              stages: dict | None = None,
              progress: Callable[[], None] = held_out.no_progress,
              memory: memory_lib.HostMemory = memory_lib.NONE) -> list[Example | None]:
  """Every sentence through `search` (searches.make_search), batched by length, in input order.

  The search is compiled for every call shape before any sentence is decoded
  (held_out.compile_ahead). Blank sentences are not decoded: their entry is None.
  stages: if given, receives the seconds spent segmenting ("tokenise"), compiling
  ("compile", with the count in "compilations") and searching ("search").
  progress: called after each search call. memory: host-memory hooks for the compilations.
  """
  stages = {} if stages is None else stages
  began = time.perf_counter()
  keep = [i for i, s in enumerate(sentences) if s.strip()]
  outputs: list[Example | None] = [None] * len(sentences)
  stages.update(tokenise=0.0, compile=0.0, compilations=0, search=0.0)
  if not keep:
    return outputs
  widths = pipeline.bucket_widths(trained.config.data.max_len)
  split = translation.source_split([sentences[i] for i in keep], trained.vocabs, widths)
  ev = pipeline.eval_data(split, batch_size)
  stages["tokenise"] = time.perf_counter() - began
  run, compiled = held_out.compile_ahead(search, trained.params, ev, memory=memory)
  stages["compile"], stages["compilations"] = sum(compiled.seconds.values()), len(compiled.seconds)
  began = time.perf_counter()
  for i, example in zip(keep, held_out.decode(trained.params, ev, run, progress=progress)):
    outputs[i] = example
  stages["search"] = time.perf_counter() - began
  return outputs


def detokenize(example: Example | None, trained: Trained) -> str:
  """The output sentence as one line of text ('' for an undecoded blank input)."""
  if example is None:
    return ""
  text = trained.vocabs.tgt.decode(example.output)
  return " ".join(text.splitlines())  # a byte-fallback newline must not split the line
