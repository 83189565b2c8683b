"""One writer per workdir: an OS file lock held for the life of a training run.

`train` (and `compare`, for its own directory and each run in it) holds an
exclusive `fcntl.flock` on W/.writer.lock while it writes W. The kernel releases
the lock when the process ends in any way, `kill -9` included, so a lock file
left behind by a dead process is simply locked again by the next writer (the
file only says who holds it). A second writer gets WorkdirBusyError naming the
holder before it reads or writes anything else in W. Readers (`translate`,
`evaluate`) take no lock: checkpoints become visible only once complete (Orbax
renames a finished save into place).

flock locks are advisory and local to one machine's kernel (and to NFS servers
that support them); processes of a multi-host run lock only from process 0.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket

LOCK_NAME = ".writer.lock"


class WorkdirBusyError(RuntimeError):
  """Another live process writes this workdir; the message names it."""


class WriterLock:
  """An exclusive lock on `workdir` for `program` (a context manager).

  Creates `workdir` if needed; if it created it and the run leaves nothing in it but the
  lock file, release() removes both, so a rejected start leaves no empty workdir behind.
  """

  def __init__(self, workdir: str, program: str):
    self.workdir, self.program = workdir, program
    self.path = os.path.join(workdir, LOCK_NAME)
    self._fd: int | None = None
    self._created = False

  def acquire(self) -> "WriterLock":
    if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
      raise NotADirectoryError(20, "not a directory (--workdir names a file)", self.workdir)
    self._created = not os.path.exists(self.workdir)
    os.makedirs(self.workdir, exist_ok=True)
    while self._fd is None:
      self._fd = self._lock_file()
    left = os.pread(self._fd, 4096, 0).decode("utf-8", "replace").strip()
    if left:  # a clean release empties the file: its holder ended without releasing
      print(f"note: {self.workdir} was last written by {left}, which ended without "
            f"releasing it; taking it over", flush=True)
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"{self.program} (PID {os.getpid()} on {socket.gethostname()}, "
              f"since {now})\n".encode(), 0)
    return self

  def _lock_file(self) -> int | None:
    """The locked descriptor of the lock file; None if the file was replaced meanwhile."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
      os.close(fd)
      raise WorkdirBusyError(f"{self.workdir} is in use by {holder}; one writer per workdir "
                             f"(lock {self.path})") from None
    if not os.path.exists(self.path) or os.stat(self.path).st_ino != os.fstat(fd).st_ino:
      os.close(fd)  # its holder removed it after we opened it: lock the new one
      return None
    return fd

  def release(self) -> None:
    if self._fd is None:
      return
    if self._created and os.listdir(self.workdir) == [LOCK_NAME]:
      os.remove(self.path)
      os.rmdir(self.workdir)
    else:
      os.ftruncate(self._fd, 0)  # released cleanly: the next writer has nothing to take over
    os.close(self._fd)  # closing the descriptor releases the lock
    self._fd = None

  def __enter__(self) -> "WriterLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
