"""A trained translation model read back from its workdir, and text through it.

`load` restores one checkpoint for decoding: the config comes from the
checkpoint's own metadata (not from flags), the vocabularies from the workdir,
whose SHA-256 must match the ones the checkpoint was trained with, and the
state is restored into `jax.eval_shape` targets of that config (checkpoint.py) on
one device, whatever the number of devices it was trained on.
"""

from __future__ import annotations

import bisect
import itertools
import os
import sys
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from attn_jax import executable_store, memory as memory_lib
from attn_jax.config import Config, ModelConfig, is_checkpoint_choice
from attn_jax.executable_store import ExecutableStore
from attn_jax.data import pipeline, translation
from attn_jax.data.vocab import Vocab
from attn_jax.decode import searches
from attn_jax.evaluation import held_out
from attn_jax.evaluation.held_out import Example
from attn_jax.train import parallel, resume, seeds, steps
from attn_jax.train.checkpoint import CheckpointReader, UnreadableCheckpointError

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


def _candidates(reader: CheckpointReader, which: str, directory: str) -> list[int]:
  """The steps to try for checkpoint `which`, in order: a given step alone; for best and
  latest the chosen one, then every other step newest first (the fallbacks)."""
  if not is_checkpoint_choice(which):
    raise ModelLoadError(f"--checkpoint: expected best, latest or a step number, got {which!r}")
  saved = reader.steps()
  if not saved:
    raise ModelLoadError(f"{directory}: no checkpoints")
  if which not in ("best", "latest"):
    if int(which) not in saved:
      raise ModelLoadError(f"{directory}: no checkpoint at step {which} (steps saved: {saved})")
    return [int(which)]
  newest_first = saved[::-1]
  if which == "latest":
    return newest_first
  scores, errors = reader.scores()
  for error in errors:
    print(f"warning: {error}; not a candidate for best", file=sys.stderr, flush=True)
  scored = [(score, step) for step, score in scores.items() if score is not None]
  if not scored:
    raise ModelLoadError(f"{directory}: no readable checkpoint has a validation score yet; "
                         f"use --checkpoint=latest (steps saved: {saved})")
  best = max(scored)[1]
  return [best] + [step for step in newest_first if step != best]


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
  """The translation model(s) of `workdir`, as a list, at checkpoint `which` (best, latest
  or a step); with translation_only False, a synthetic task's model too (its vocabs None).

  An unreadable checkpoint is one error naming its step and directory; with best or
  latest, the newest readable one is used instead, after a warning line on stderr. The
  directory is only read (checkpoint.CheckpointReader). Raises ModelLoadError or
  resume.IncompatibleCheckpointError, naming the problem; see _restore_step for the rest.
  """
  if average < 1:
    raise ModelLoadError(f"--average: expected 1 or more checkpoints, got {average}")
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise ModelLoadError(f"{directory}: no such directory (not a training workdir?)")
  reader = CheckpointReader(directory)
  try:
    candidates = _candidates(reader, which, directory)
    return _first_readable(candidates, lambda step: _restore_step(
        reader, workdir, step, seed_index, translation_only, average))
  finally:
    reader.close()


def _first_readable(candidates: list[int], restore: Callable[[int], list[Trained]]
                    ) -> list[Trained]:
  """restore(step) of the first candidate step that can be read, with a warning line for
  each one that cannot; ModelLoadError naming the last if none can."""
  for i, step in enumerate(candidates):
    try:
      return restore(step)
    except UnreadableCheckpointError as e:
      error = e
    if i + 1 < len(candidates):
      print(f"warning: {error}; using the checkpoint at step {candidates[i + 1]} instead",
            file=sys.stderr, flush=True)
  tried = f"; no other checkpoint is readable (tried {candidates})" if len(candidates) > 1 else ""
  raise ModelLoadError(f"{error}{tried}")


def _restore_step(reader: CheckpointReader, workdir: str, step: int, seed_index: int | None,
                  translation_only: bool, average: int) -> list[Trained]:
  """The model(s) of `workdir` at checkpoint `step` (see _restore).

  A workdir that trained num_seeds > 1 models holds them stacked; `seed_index` picks
  one, whose config is then its stand-alone one (seeds.member_config), and None takes
  each of them from the one restore (in seed order). With average > 1 the parameters
  are the element-wise mean of those of the `average` latest checkpoints up to `step`
  (checkpoint averaging, as Vaswani et al. 2017 sec. 6.1; the model config of each
  must be the same). Raises UnreadableCheckpointError for a step that cannot be read.
  """
  directory = os.path.join(workdir, "checkpoints")
  averaged = _averaging_steps(reader.steps(), step, average, directory)
  metadata = {s: reader.metadata(s) for s in averaged}
  config = Config.from_dict(metadata[step]["config"])
  vocabs = _vocabs(config, workdir, translation_only)
  num_seeds = config.train.num_seeds
  if seed_index is not None and not 0 <= seed_index < num_seeds:
    raise ModelLoadError(f"--seed_index: {workdir} holds {num_seeds} model(s), "
                         f"so 0 to {num_seeds - 1}; got {seed_index}")
  target = parallel.Placement(jax.devices()[:1]).restore_target(
      resume.abstract_state(config, steps.make_optimizer(config.train)))
  params = []
  for s in averaged:
    resume.check_vocab(metadata[s], pipeline.vocab_ids(vocabs), directory, s)
    other = Config.from_dict(metadata[s]["config"])
    if (other.model, other.train.num_seeds) != (config.model, num_seeds):
      raise ModelLoadError(f"--average: {directory}/{s} was trained with another model "
                           f"config than step {step}")
    params.append(reader.restore_params(s, target["params"]))
  # [*param shape]: the mean over the averaged checkpoints, one leaf at a time.
  mean = params[0] if len(params) == 1 else jax.tree.map(
      lambda *leaves: sum(leaves[1:], leaves[0]) / len(leaves), *params)
  if num_seeds == 1:
    return [Trained(config, mean, vocabs, step, averaged_steps=tuple(averaged))]
  return [Trained(seeds.member_config(config, k), seeds.member(mean, k), vocabs, step, k,
                  num_seeds, tuple(averaged))
          for k in (range(num_seeds) if seed_index is None else [seed_index])]


def _vocabs(config: Config, workdir: str, translation_only: bool) -> translation.Vocabs | None:
  """The workdir's vocabularies for a translation model; None for a synthetic task's."""
  d = config.data
  if d.task != "translation":
    if translation_only:
      raise ModelLoadError(f"{workdir}: trained on the {d.task} task, not translation")
    return None
  try:
    return translation.load_vocabs(workdir, d.src_lang, d.tgt_lang, d.joint_vocab)
  except OSError as e:
    raise ModelLoadError(f"{e.filename}: {e.strerror}") from None


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


CHUNK_LINES = 1024  # input lines decoded together: a stopped run keeps the chunks done


def source_limit(config: Config) -> int:
  """The default longest source translated whole: twice the training length limit (subwords)."""
  return 2 * config.data.max_len


def translate(trained: Trained, sentences: list[str], search: Callable, batch_size: int,
              stages: dict | None = None,
              progress: Callable[[], None] = held_out.no_progress,
              memory: memory_lib.HostMemory = memory_lib.NONE,
              max_source_len: int | None = None, chunk_lines: int = CHUNK_LINES,
              done: Callable[[int, list[Example | None]], None] | None = None,
              store: ExecutableStore | None = None,
              call_batches: int = held_out.CALL_BATCHES) -> list[Example | None]:
  """Every sentence through `search` (searches.make_search), in input order.

  The input is decoded `chunk_lines` lines at a time, batched by length within a chunk;
  after each chunk, done(first line, its outputs) is called, so a caller can write the
  lines done so far. The call shapes depend only on the model's length buckets, `batch_size`
  and the source limit (held_out.call_shape), so the search is compiled for those before
  any sentence is decoded (held_out.compile_shapes), or loaded from `store`, where
  compile_searches may have put them at the end of training; a row's result does not
  depend on the other rows of its call. Blank sentences are not decoded: their entry is
  None. A sentence of more than `max_source_len` subwords (default source_limit) is cut
  before word starts into pieces that short (translation.cut), translated one by one and
  joined (weights block-diagonal), with a warning line on stderr; with the search's
  per-sentence output limits, no line can stall a run.
  stages: if given, receives the seconds spent segmenting ("tokenise"), compiling or
  loading from `store` ("compile", with the counts in "compilations" and "loaded") and
  searching ("search").
  progress: called after each search call. memory: host-memory hooks for the compilations.
  call_batches: batches of `batch_size` rows per search call (held_out.decode_calls).
  """
  stages = {} if stages is None else stages
  stages.update(tokenise=0.0, compile=0.0, compilations=0, loaded=0, search=0.0)
  began = time.perf_counter()
  limit = max_source_len or source_limit(trained.config)
  src, owner = _source_pieces(sentences, trained.vocabs.src, limit)
  widths = source_widths(trained.config, limit)
  chunks = [(first, min(first + chunk_lines, len(sentences)))
            for first in range(0, len(sentences), chunk_lines)]
  spans = [(bisect.bisect_left(owner, first), bisect.bisect_left(owner, end))
           for first, end in chunks]  # the pieces of each chunk
  evs = [pipeline.eval_data(translation.ids_split(src[a:b], widths), batch_size) if b > a
         else None for a, b in spans]
  stages["tokenise"] = time.perf_counter() - began
  outputs: list[Example | None] = [None] * len(sentences)
  shapes = {held_out.call_shape(b.src.shape[1], batch_size, call_batches)
            for ev in evs if ev is not None for _, b in ev.batches}
  if shapes:  # the shapes of every chunk's calls, compiled (or loaded) once
    run, compiled = held_out.compile_shapes(search, trained.params, shapes, memory, store)
    stages["compile"] = sum(compiled.seconds.values())
    stages["compilations"] = len(compiled.seconds) - len(compiled.loaded)
    stages["loaded"] = len(compiled.loaded)
  began = time.perf_counter()
  for (first, end), (a, b), ev in zip(chunks, spans, evs):
    decoded = [] if ev is None else held_out.decode(trained.params, ev, run, call_batches,
                                                    progress)
    for line, group in itertools.groupby(zip(owner[a:b], decoded), key=lambda p: p[0]):
      outputs[line] = _joined([example for _, example in group])
    if done is not None:
      done(first, outputs[first:end])
  stages["search"] = time.perf_counter() - began
  return outputs


def source_widths(config: Config, limit: int) -> tuple[int, ...]:
  """The source widths translate decodes with: the model's length buckets, and one for
  sources up to `limit` subwords beyond them (EOS included in each)."""
  widths = pipeline.bucket_widths(config.data.max_len)
  return widths + ((limit + 1,) if limit + 1 > widths[-1] else ())


# translate's greedy search and its default beam search: (beam size, length penalty)
DEFAULT_SEARCHES = ((1, 0.0), (searches.DEFAULT_BEAM_SIZE, searches.DEFAULT_LENGTH_PENALTY))


def compile_searches(workdir: str, batch_size: int = held_out.DECODE_BATCH_SIZE,
                     beams: tuple[tuple[int, float], ...] = DEFAULT_SEARCHES,
                     memory: memory_lib.HostMemory = memory_lib.NONE) -> list[str]:
  """Compiles the searches (beam size, length penalty) of `workdir`'s model without
  attention weights, as translate runs them, for every length bucket of the model, into
  the workdir's executable store, so that a first translate loads rather than compiles
  them. Every checkpoint of a workdir has the same shapes: the latest stands for all.
  Entries the store already holds are kept. Returns one line per search."""
  trained = load(workdir, "latest")
  lines = []
  for beam_size, alpha in beams:
    args = dict(config=trained.search_config, beam_size=beam_size, alpha=alpha,
                with_weights=False, slots=batch_size)
    store = executable_store.for_workdir(workdir, searches.describe(**args))
    shapes = [held_out.call_shape(w, batch_size)
              for w in pipeline.bucket_widths(trained.config.data.max_len)]
    _, compiled = held_out.compile_shapes(searches.make_search(**args), trained.params, shapes,
                                          memory, store)
    lines.append(f"beam {beam_size}: {len(shapes) - len(compiled.loaded)} compiled, "
                 f"{len(compiled.loaded)} kept, {sum(compiled.seconds.values()):.1f}s")
  return lines


def _source_pieces(sentences: list[str], vocab: Vocab, limit: int
                   ) -> tuple[list[np.ndarray], list[int]]:
  """(ids [len] of every piece to decode, the line each comes from, ascending): one piece
  per non-blank line, or several for a line over `limit` subwords (a warning each)."""
  src, owner = [], []
  for line, sentence in enumerate(sentences):
    if not sentence.strip():
      continue
    pieces = translation.cut(np.asarray(vocab.encode(sentence), np.int32), limit, vocab)
    if len(pieces) > 1:
      print(f"warning: line {line + 1}: {sum(map(len, pieces)):,} subwords, more than "
            f"max_source_len {limit}: translated in {len(pieces)} pieces cut at word starts",
            file=sys.stderr, flush=True)
    src += pieces
    owner += [line] * len(pieces)
  return src, owner


def _joined(examples: list[Example]) -> Example:
  """The pieces of one cut line as one Example: sources and outputs concatenated, each
  piece's weights [out_len, src_len] on the block diagonal."""
  if len(examples) == 1:
    return examples[0]
  weights = np.zeros((sum(len(e.output) for e in examples), sum(len(e.src) for e in examples)),
                     np.float32)
  row = col = 0
  for e in examples:
    if e.weights.size:  # a search without weights gives [out_len, 0]
      weights[row:row + len(e.output), col:col + len(e.src)] = e.weights  # [out_len, src_len]
    row, col = row + len(e.output), col + len(e.src)
  return Example(np.concatenate([e.src for e in examples]),
                 np.concatenate([e.output for e in examples]), weights)


def detokenize(example: Example | None, trained: Trained) -> str:
  """The output sentence as one line of text ('' for an undecoded blank input)."""
  if example is None:
    return ""
  text = trained.vocabs.tgt.decode(example.output)
  return " ".join(text.splitlines())  # a byte-fallback newline must not split the line
