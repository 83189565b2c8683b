"""Resuming a run: the latest readable checkpoint restored into the shapes of the current
code, or a fresh state when there is none.

Follows the resume order written in checkpoint.py: metadata first (config and vocabulary
checked before anything is read or written), then the state, restored into the
`jax.eval_shape` of the initialiser. An unreadable checkpoint is moved aside, never deleted.
"""

from __future__ import annotations

import jax

from attn_jax.config import Config, field_value, incompatible_fields
from attn_jax.train import checkpoint, parallel, seeds, steps
from attn_jax.train.checkpoint import Checkpointer


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint of another configuration or vocabulary."""


def check_vocab(saved: dict, vocab_ids: dict | None, directory: str, step: int) -> None:
  """Raises IncompatibleCheckpointError if a checkpoint's vocabulary hashes differ."""
  if saved.get("vocab") != vocab_ids:
    raise IncompatibleCheckpointError(
        f"{directory}: checkpoint at step {step} was trained with another vocabulary "
        f"(sha256 saved {saved.get('vocab')}, now {vocab_ids})")


def abstract_state(config: Config, optimizer) -> dict:
  """The training state's shapes and dtypes (a dict of jax.ShapeDtypeStruct trees), stacked
  [num_seeds, ...] where the config trains several seeds: the target to restore into."""
  return jax.eval_shape(lambda: steps.init_state(seeds.run_keys(config.train)[0], config.model,
                                                 optimizer))._asdict()  # keys traced too


class CorruptCheckpointError(RuntimeError):
  """No checkpoint in the directory could be read; the message names them."""


def restore_or_init(config: Config, ckpt: Checkpointer, optimizer, directory: str,
                    vocab_ids: dict | None = None,
                    placement: parallel.Placement | None = None
                    ) -> tuple[steps.TrainState, dict]:
  """(latest readable checkpoint's state and metadata, or a fresh state and {}); follows
  checkpoint.py's resume order.

  A checkpoint that cannot be read (a partial or corrupted directory) is moved
  aside to <step>.unreadable with a warning, in favour of the one before it;
  nothing is deleted. If none can be read, CorruptCheckpointError. A readable one
  of another config or vocabulary raises IncompatibleCheckpointError.
  """
  placement = placement or parallel.Placement(jax.devices()[:1])
  k_init, _ = seeds.run_keys(config.train)
  for aside in ckpt.set_aside_at_open:
    print(f"warning: {directory}: checkpoint at step {aside.step} is unreadable "
          f"({aside.reason}); moved to {aside.moved_to}", flush=True)
  saved_steps = ckpt.steps()
  if not saved_steps:
    return placement.replicate(steps.init_state(k_init, config.model, optimizer)), {}
  target = placement.restore_target(abstract_state(config, optimizer))
  for step in reversed(saved_steps):
    try:
      saved = ckpt.metadata(step)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file is corrupt
      _set_aside(ckpt, directory, step, e)
      continue
    differing = incompatible_fields(saved.get("config", {}), config)
    if differing:
      old = saved.get("config", {})
      raise IncompatibleCheckpointError(
          f"{directory}: checkpoint at step {step} has another config; differing fields: "
          + ", ".join(f"{f} (saved {field_value(old, f)!r}, now {field_value(config, f)!r})"
                      for f in differing))
    check_vocab(saved, vocab_ids, directory, step)
    try:
      state, metadata = ckpt.restore(step, target)
    except Exception as e:  # pylint: disable=broad-except
      _set_aside(ckpt, directory, step, e)
      continue
    return steps.TrainState(**state), metadata
  raise CorruptCheckpointError(f"{directory}: no checkpoint is readable (steps {saved_steps}, "
                               f"now moved to <step>.unreadable); a rerun starts afresh")


def _set_aside(ckpt: Checkpointer, directory: str, step: int, error: Exception) -> None:
  moved = ckpt.set_aside(step)
  print(f"warning: {directory}: checkpoint at step {step} is unreadable "
        f"({checkpoint.reason(error)}); moved to {moved}; trying the one before it", flush=True)
