"""Several independent runs as one program: states and batches stacked on a seed axis.

With `num_seeds` N > 1, run k (0 <= k < N) is the run that `member_config(config, k)`
describes on its own: initialisation and dropout from seed `train.seed + k`, the
training pairs reshuffled by `shuffle_seed(config.data, k)`. Its parameters and
optimizer state are row k of arrays with a leading axis [N, ...]; the training
step is `jax.vmap`-ed over that axis (steps.make_train_step), so the N runs share
one compilation and their matmuls become N-times larger batched ones.

A reshuffle keeps the sequence of batch widths (batching.train_batch), so the N
batches of a step have one shape and stack without padding; padding would change
the shape, hence the random bits, of a run's dropout masks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from attn_jax.config import Config, DataConfig, TrainConfig


def shuffle_seed(config: DataConfig, k: int) -> int | None:
  """Run k's shuffle seed: the config's own for run 0, then (shuffle_seed or seed) + k."""
  if k == 0:
    return config.shuffle_seed
  return (config.seed if config.shuffle_seed is None else config.shuffle_seed) + k


def member_config(config: Config, k: int) -> Config:
  """The stand-alone config of run k of `config`'s num_seeds runs."""
  return dataclasses.replace(
      config,
      data=dataclasses.replace(config.data, shuffle_seed=shuffle_seed(config.data, k)),
      train=dataclasses.replace(config.train, seed=config.train.seed + k, num_seeds=1))


def member(tree: Any, k: int) -> Any:
  """Row k of every leaf of a stacked tree: [N, ...] -> [...]."""
  return jax.tree.map(lambda x: x[k], tree)


def fold_in(keys: jax.Array, step: int) -> jax.Array:
  """jax.random.fold_in of each of N keys [N] with the same step -> [N] keys."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)


def run_keys(config: TrainConfig) -> tuple[jax.Array, jax.Array]:
  """(init key, base dropout key) []; with num_seeds N > 1, those of runs seed, seed + 1,
  ... stacked [N]. Step s uses fold_in(base, s) (step_key)."""
  pairs = [jax.random.split(jax.random.key(config.seed + k)) for k in range(config.num_seeds)]
  if config.num_seeds == 1:
    return pairs[0][0], pairs[0][1]
  pairs = jnp.stack(pairs)  # [N, 2]
  return pairs[:, 0], pairs[:, 1]


def step_key(k_train: jax.Array, step: int) -> jax.Array:
  """The dropout key of step `step`: [] or, for stacked runs, [N]."""
  return jax.random.fold_in(k_train, step) if k_train.ndim == 0 else fold_in(k_train, step)


def shuffle_seeds(config: DataConfig, num_seeds: int) -> tuple[int | None, ...]:
  """The shuffle seeds of runs 0 .. num_seeds-1 (shuffle_seed), for pipeline.load."""
  return tuple(shuffle_seed(config, k) for k in range(num_seeds))
