"""The data a run trains and evaluates on, for every task behind one interface.

* Synthetic tasks (tasks.py): one padded Dataset per split; the batch of a step
  comes from dataset.train_batch, and the single width is the only batch shape.
* Translation: `train` and `val` read from data_dir (corpus.py), SentencePiece
  vocabularies trained once and stored in the workdir (vocab.py), and length
  buckets (batching.py) whose widths are the batch shapes, one compilation each.

In both, the batch of step s is a pure function of s, so the data position
needs no state: a run resumed at step s reads what an uninterrupted one would.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np

from attn_jax.config import ConfigError, DataConfig
from attn_jax.data import batching, corpus, dataset, tasks, translation

TRAIN_SPLIT = "train"
EVAL_SPLIT = "val"  # evaluated during training; test sets are for experiments.evaluate only


class TrainData(NamedTuple):
  batch: Callable[[int], dataset.Batch]  # step -> Batch [batch_size, width]; stacked: [N, ...]
  position: Callable[[int], dict]  # step -> {"epoch", "batch_in_epoch"}
  size: int  # training pairs
  widths: tuple[int, ...]  # the batch widths: one compilation of the train step each


class EvalData(NamedTuple):
  batches: tuple[tuple[np.ndarray, dataset.Batch], ...]  # (line of each real row, Batch [batch_size, width])
  size: int  # sentences
  text: corpus.ParallelText | None  # raw sentences in line order (translation)

  @property
  def batch_size(self) -> int:
    """Rows per batch (0 when there are no batches)."""
    return len(self.batches[0][1].src) if self.batches else 0


class Resegment(NamedTuple):
  """What BPE-dropout of the training pairs needs (DataConfig.subword_dropout)."""
  text: corpus.ParallelText  # the training text the buckets index
  vocabs: translation.Vocabs
  dropout: float  # the merge-dropout rate, > 0


class RunData(NamedTuple):
  train: TrainData
  eval: EvalData
  vocabs: translation.Vocabs | None  # None for synthetic tasks
  summary: str  # one line for the log: sizes, dropped and filtered pairs, shapes


def vocab_ids(vocabs: translation.Vocabs | None) -> dict | None:
  """{"src": sha256, "tgt": sha256} of the vocabularies (checkpoint metadata)."""
  return None if vocabs is None else {"src": vocabs.src.sha256, "tgt": vocabs.tgt.sha256}


def token_names(vocabs: translation.Vocabs | None) -> tuple[Callable, Callable]:
  """(source, target) functions from token ids to their names, for plots: the synthetic
  tasks' symbols, or the vocabularies' pieces."""
  if vocabs is None:
    return tasks.token_names, tasks.token_names
  return vocabs.src.pieces, vocabs.tgt.pieces


def first_batch_per_width(train: TrainData, start: int, stop: int | None = None,
                          within_epoch: bool = True) -> dict[int, dataset.Batch]:
  """The first batch of each width among the steps from `start` to the end of its epoch
  (and before `stop`, if given): from an epoch's first step that is every width of
  train.widths (with subword_dropout an epoch may leave a bucket empty). With
  within_epoch=False the search runs on through later epochs up to `stop` (required)."""
  if not within_epoch and stop is None:
    raise ValueError("first_batch_per_width: within_epoch=False needs a stop step")
  found: dict[int, dataset.Batch] = {}
  epoch = train.position(start)["epoch"]
  step = start
  while len(found) < len(train.widths) and (stop is None or step < stop):
    if within_epoch and train.position(step)["epoch"] != epoch:
      break
    batch = train.batch(step)
    found.setdefault(batch.src.shape[-1], batch)
    step += 1
  return found


def bucket_widths(max_len: int) -> tuple[int, ...]:
  """translation.DEFAULT_WIDTHS up to max_len + 1 (subwords + EOS), which is always one."""
  return tuple(sorted({w for w in translation.DEFAULT_WIDTHS if w <= max_len} | {max_len + 1}))


def load(config: DataConfig, batch_size: int, workdir: str,
         shuffle_seeds: tuple[int | None, ...] | None = None) -> RunData:
  """The run's data; raises corpus.CorpusError naming the file or ConfigError naming the
  option the data cannot satisfy.

  shuffle_seeds: the training order of each of N streams (None: config.seed's order);
  default (config.shuffle_seed,). With N > 1 the training batches are the N streams'
  batches stacked: Batch [N, batch_size, width].
  """
  shuffle_seeds = shuffle_seeds or (config.shuffle_seed,)
  if config.task == "translation":
    return _translation(config, batch_size, workdir, shuffle_seeds)
  return _synthetic(config, batch_size, shuffle_seeds)


def stacked(make: Callable[[int | None], TrainData],
            shuffle_seeds: tuple[int | None, ...]) -> TrainData:
  """make(shuffle seed) for one seed; for several, their streams stacked step by step.
  Their batches have the same width at every step and their epochs the same length, so the
  data position is that of any of them.
  """
  runs = [make(seed) for seed in shuffle_seeds]
  if len(runs) == 1:
    return runs[0]

  def batch(step):
    batches = [r.batch(step) for r in runs]
    width = max(b.src.shape[1] for b in batches)  # differ only with subword_dropout
    return dataset.stack([dataset.widen(b, width) for b in batches])
  return runs[0]._replace(batch=batch)


def _synthetic(config: DataConfig, batch_size: int,
               shuffle_seeds: tuple[int | None, ...]) -> RunData:
  train_ds, eval_ds = tasks.make_datasets(config)
  if dataset.size(train_ds) < batch_size:
    raise ConfigError(f"batch_size: {batch_size} exceeds the training set ({dataset.size(train_ds)})")
  eval_batches = tuple((np.arange(start, min(start + batch_size, dataset.size(eval_ds))), batch)
                       for start, batch in zip(range(0, dataset.size(eval_ds), batch_size),
                                               dataset.eval_batches(eval_ds, batch_size)))
  train = stacked(lambda shuffle_seed: TrainData(
      batch=functools.partial(dataset.train_batch, train_ds, batch_size=batch_size,
                              seed=config.seed if shuffle_seed is None else shuffle_seed),
      position=functools.partial(dataset.data_position, train_ds, batch_size=batch_size),
      size=dataset.size(train_ds), widths=(train_ds.src.shape[1],)), shuffle_seeds)
  summary = f"train {dataset.size(train_ds)} / eval {dataset.size(eval_ds)} examples"
  return RunData(train, EvalData(eval_batches, dataset.size(eval_ds), None), None, summary)


def eval_data(split: translation.Split, batch_size: int) -> EvalData:
  """Fixed-shape batches of an evaluation split, each row mapped back to its line."""
  buckets = split.buckets
  batches = tuple((buckets.index[b][rows], batch)
                  for b, rows, batch in batching.eval_batches(buckets, batch_size))
  return EvalData(batches, sum(len(i) for i in buckets.index), split.text)


def bucketed_train(buckets: batching.Buckets, batch_size: int, seed: int,
                   shuffle_seed: int | None = None, resegment: Resegment | None = None
                   ) -> TrainData:
  """The training stream of length-bucketed pairs (batching.train_batch), or with
  `resegment` the pairs segmented afresh each epoch (translation.Resegmented)."""
  if resegment is None:
    batch = functools.partial(batching.train_batch, buckets, batch_size=batch_size, seed=seed,
                              shuffle_seed=shuffle_seed)
    widths = tuple(w for w, s in zip(buckets.widths, buckets.sets) if dataset.size(s))
  else:
    batch = translation.Resegmented(buckets, resegment.text, resegment.vocabs, resegment.dropout,
                                    batch_size, seed, shuffle_seed).batch
    widths = buckets.widths  # a resampled epoch may fill any bucket
  return TrainData(
      batch=batch,
      position=functools.partial(batching.data_position, buckets, batch_size=batch_size),
      size=sum(dataset.size(s) for s in buckets.sets), widths=widths)


def _translation(config: DataConfig, batch_size: int, workdir: str,
                 shuffle_seeds: tuple[int | None, ...]) -> RunData:
  available = corpus.languages(config.data_dir, TRAIN_SPLIT)
  for name in ("src_lang", "tgt_lang"):
    lang = getattr(config, name)
    if lang not in available:
      raise ConfigError(f"{name}: no {TRAIN_SPLIT}.{lang}[.gz] in {config.data_dir} "
                       f"(languages there: {', '.join(available) or 'none'})")
  text = corpus.read_parallel(config.data_dir, TRAIN_SPLIT, config.src_lang, config.tgt_lang,
                              drop_empty=True)
  vocabs = translation.build_vocabs(text, workdir, config.src_lang, config.tgt_lang,
                                    config.vocab_size, config.joint_vocab)
  distilled = (corpus.read_distilled(config.data_dir, TRAIN_SPLIT, config.src_lang,
                                     config.distilled_targets)
               if config.distilled_targets else None)
  if distilled is not None:
    text = corpus.joined(text, distilled)
  widths = bucket_widths(config.max_len)
  train_split = translation.load_split(config.data_dir, TRAIN_SPLIT, config.src_lang,
                                       config.tgt_lang, vocabs, widths, training=True, text=text)
  val = translation.load_split(config.data_dir, EVAL_SPLIT, config.src_lang, config.tgt_lang,
                               vocabs, widths)
  buckets = train_split.buckets
  if batching.batches_per_epoch(buckets, batch_size) == 0:
    raise ConfigError(f"max_len: no training pair of {config.data_dir} fits {config.max_len} subwords")
  resegment = (Resegment(text, vocabs, config.subword_dropout) if config.subword_dropout
               else None)
  train = stacked(functools.partial(bucketed_train, buckets, batch_size, config.seed,
                                    resegment=resegment), shuffle_seeds)
  summary = (f"train {train.size} pairs "
             f"({f'{len(distilled.src)} distilled pairs added, ' if distilled else ''}"
             f"{text.dropped_empty} empty dropped, {buckets.filtered} over max_len "
             f"{config.max_len} filtered) in buckets {train.widths} / {EVAL_SPLIT} "
             f"{len(val.text.src)} sentences / vocabulary {vocabs.src.size}"
             f"{' joint' if config.joint_vocab else f' + {vocabs.tgt.size}'}"
             f"{f' / BPE-dropout {config.subword_dropout}' if resegment else ''}")
  return RunData(train, eval_data(val, batch_size), vocabs, summary)
