"""Data parallelism over every device of every process: `jax.jit` with `NamedSharding`.

A one-axis mesh ("data") spans all devices. Batches are split along their rows
over it; parameters and optimizer state are replicated. The jitted step
functions are the single-device ones: XLA's SPMD partitioner inserts the
gradient all-reduce, so the global batch (`--batch_size`) and every result are
those of one device, to float tolerance.

With several processes (`jax.distributed`), every process computes the same
global batch of step s (a pure function of s) and places only the rows that
belong to its own devices; results leave the devices through `fetch`, which
gathers across processes.

On one device nothing is placed or wrapped: the code path is the plain one.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from attn_jax.config import ConfigError

DATA_AXIS = "data"


class Placement:
  """Where arrays live: one device (mesh None), or a data-parallel mesh."""

  def __init__(self, devices: list | None = None):
    devices = list(devices if devices is not None else jax.devices())
    self.device_count = len(devices)
    self.mesh = Mesh(np.array(devices), (DATA_AXIS,)) if len(devices) > 1 else None
    self._device = devices[0]

  @property
  def is_main_process(self) -> bool:
    """Process 0 writes logs, plots and console output."""
    return jax.process_index() == 0

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % self.device_count:
      raise ConfigError(f"batch_size: {batch_size} does not divide among "
                        f"{self.device_count} devices")

  def _put(self, tree: Any, spec: PartitionSpec) -> Any:
    sharding = NamedSharding(self.mesh, spec)

    def put(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
    return jax.tree.map(put, tree)

  def batch(self, tree: Any, leading: int = 0) -> Any:
    """Host arrays [batch, ...] (after `leading` axes, e.g. a seed axis) -> their rows
    split over the devices."""
    return tree if self.mesh is None else self._put(tree, PartitionSpec(*[None] * leading,
                                                                        DATA_AXIS))

  def replicate(self, tree: Any) -> Any:
    """Host or device arrays, identical in every process -> a copy on every device."""
    return tree if self.mesh is None else self._put(jax.device_get(tree), PartitionSpec())

  def restore_target(self, abstract: Any) -> Any:
    """jax.ShapeDtypeStruct leaves -> the same, placed as this run places its state, so a
    checkpoint written on any number of devices restores here."""
    if self.mesh is None:
      sharding = jax.sharding.SingleDeviceSharding(self._device)
    else:
      sharding = NamedSharding(self.mesh, PartitionSpec())
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        abstract)

  def fetch(self, tree: Any) -> Any:
    """Device arrays -> host NumPy arrays, gathered from every process."""
    if jax.process_count() == 1:
      return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)

  def on_batches(self, fn: Callable, batch_args: int) -> Callable:
    """fn(params, *arrays) with its first `batch_args` array arguments split over the
    devices and its result fetched to the host (for evaluation and decoding)."""
    if self.mesh is None:
      return fn

    def wrapped(params, *args):
      placed = self.batch(args[:batch_args]) + tuple(args[batch_args:])
      return self.fetch(fn(params, *placed))
    return wrapped
