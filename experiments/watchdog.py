"""A program's watchdog: stop signals that work while the main thread is blocked, and an
exit with every thread's stack when no progress is made for too long.

Python runs a signal handler only when the main thread returns to the interpreter; a
main thread blocked in a device call (waiting on XLA's runtime, say) never does, so a
plain handler leaves SIGTERM unanswered. Here the handler also writes the signal number
to a socket (`signal.set_wakeup_fd`: the interpreter's C-level handler does that on
whichever thread receives the signal), which a watcher thread reads:

* the first SIGTERM/SIGINT is recorded (`stop_requested()` returns its name: a training
  loop checkpoints and returns) or, for programs that do not poll, interrupts the main
  thread with `Interrupted`;
* a second signal, or `grace` seconds after the first without progress, end the
  process at once (status 128 + the signal's number) with one line. Checkpoints survive
  that as they survive `kill -9`: a save is written to a temporary directory and renamed
  when complete, and a resume skips what is incomplete.

Progress is whatever tells the watchdog so (`progress()`, `stop_requested()`: a step, a
decode call, an evaluation batch), the end of a compilation, or the main thread's
Python frame having moved since the last look. When none of these happens for
`stall_timeout` seconds, the stacks of all threads go to stderr and the process exits
with status 1 and one 'error:' line.
"""

from __future__ import annotations

import faulthandler
import os
import select
import signal
import socket
import sys
import threading
import time
from types import FrameType, TracebackType

import jax

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CLOSE = 0  # a byte no signal has: asks the watcher thread to end


class Interrupted(Exception):
  """A stop signal reached a program that does not poll `stop_requested`."""

  def __init__(self, name: str, detail: str = ""):
    super().__init__(f"stopped by {name}{detail}")
    self.name = name


class Watchdog:
  """Context manager: installs the signal handlers and the watcher thread, and removes them.

  stall_timeout: seconds without progress before the program is ended (0: never).
  grace: seconds a stopping program may go without progress before it is ended.
  interrupt: a stop signal raises Interrupted in the main thread (for programs that do
    not ask `stop_requested`).
  sample_every: seconds between the watcher's looks at the main thread.
  """

  def __init__(self, stall_timeout: float, grace: float = 30.0, interrupt: bool = False,
               sample_every: float = 1.0):
    self.stall_timeout = stall_timeout
    self.grace = grace
    self.interrupt = interrupt
    self.sample_every = sample_every
    self.received: str | None = None
    self._last_progress = time.monotonic()
    self._signals: list[int] = []
    self._first_signal_at: float | None = None
    self._frame: tuple | None = None
    self._main_id = threading.main_thread().ident
    self._installed = False
    self._closing = threading.Event()
    self._raised = False  # Interrupted was raised: the program has said why it stops
    self._thread: threading.Thread | None = None
    self._sockets: tuple[socket.socket, socket.socket] | None = None
    self._old_handlers: dict[int, object] = {}
    self._old_wakeup = -1

  # -- what the program calls -------------------------------------------------------------

  def progress(self) -> None:
    """The program made progress (a step, a decode call, an evaluation batch)."""
    self._last_progress = time.monotonic()

  def stop_requested(self) -> str | None:
    """The name of the first stop signal received (e.g. "SIGTERM"), or None; counts as
    progress (a training loop asks after every step)."""
    self.progress()
    return self.received

  # -- installing ---------------------------------------------------------------------------

  def __enter__(self) -> "Watchdog":
    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be set from the main thread
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    self._sockets = (reader, writer)
    self._old_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    self._old_handlers = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
    jax.monitoring.register_event_duration_secs_listener(self._on_event)
    self._installed = True
    self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
    self._thread.start()
    return self

  def __exit__(self, exc_type: type | None, exc: BaseException | None,
               tb: TracebackType | None) -> None:
    if not self._installed:
      return
    if self.received:
      return  # stopping: the watcher stays, to end the process if exiting hangs too
    self._installed = False
    self._closing.set()
    try:
      self._sockets[1].send(bytes([_CLOSE]))
    except OSError:
      pass  # a full buffer: the thread sees _closing at its next look
    self._thread.join()
    signal.set_wakeup_fd(self._old_wakeup)
    for sig, handler in self._old_handlers.items():
      signal.signal(sig, handler)
    jax.monitoring.unregister_event_duration_listener(self._on_event)
    for s in self._sockets:
      s.close()

  def _on_event(self, event: str, duration: float, **kwargs) -> None:
    del event, duration, kwargs  # any compilation (or cache lookup) that ended is progress
    self.progress()

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    """The main thread's handler (when it runs Python): record, or interrupt."""
    del frame
    name = signal.Signals(signum).name
    self.received = self.received or name
    if self.interrupt:
      self._raised = True
      raise Interrupted(name)

  # -- the watcher thread ---------------------------------------------------------------

  def _watch(self) -> None:
    reader = self._sockets[0]
    while not self._closing.is_set():
      ready, _, _ = select.select([reader], [], [], self.sample_every)
      if ready:
        try:
          data = reader.recv(64)
        except BlockingIOError:
          data = b""
        if _CLOSE in data:
          return
        for signum in data:
          self._on_signal(signum)
      self._look_at_main_thread()
      self._check()

  def _on_signal(self, signum: int) -> None:
    self._signals.append(signum)
    self.received = self.received or signal.Signals(signum).name
    if len(self._signals) == 1:
      self._first_signal_at = time.monotonic()
    else:
      self._end_stopped(f"a second {signal.Signals(signum).name}")

  def _look_at_main_thread(self) -> None:
    """Progress if the main thread's innermost Python frame changed, or moved on."""
    frame = sys._current_frames().get(self._main_id)  # pylint: disable=protected-access
    if frame is None:
      return
    seen = (id(frame), frame.f_code, frame.f_lasti)  # not the frame: it holds its locals
    if seen != self._frame:
      self.progress()
    self._frame = seen

  def _check(self) -> None:
    now = time.monotonic()
    idle = now - self._last_progress
    if self._first_signal_at is not None:
      since = now - max(self._first_signal_at, self._last_progress)
      if since >= self.grace:
        self._end_stopped(f"no progress in the {self.grace:g}s after it")
    if self.stall_timeout and idle >= self.stall_timeout:
      _flush()
      print(f"no progress for {idle:.0f}s; the stacks of all threads:", file=sys.stderr,
            flush=True)
      faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
      print(f"error: no step, evaluation or decoding progress for {idle:.0f}s "
            f"(--stall_timeout={self.stall_timeout:g}); stacks of all threads above",
            file=sys.stderr, flush=True)
      os._exit(1)  # pylint: disable=protected-access

  def _end_stopped(self, why: str) -> None:
    first = self._signals[0]
    _flush()
    if not self._raised:
      kept = "" if self.interrupt else "; the checkpoints already saved are kept"
      print(f"error: stopped by {signal.Signals(first).name} ({why}): ended at once{kept}",
            file=sys.stderr, flush=True)
    os._exit(128 + first)  # pylint: disable=protected-access


def _flush() -> None:
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass

