"""One process per run directory: an advisory lock on `<logdir>/.lock`.

The lock is an `fcntl.flock` on a file holding the owner's PID and host.
The kernel drops it when the owner exits, however it exits, so a lock file
left by a killed process is stale by construction: the next process takes
the lock over and says whose it was.
"""

import fcntl
import os
import pathlib
import socket

from absl import logging


class RunLocked(RuntimeError):
  """Another live process holds the run directory's lock."""


class RunLock:
  """Holds `<logdir>/.lock` until `release()` or process exit."""

  def __init__(self, logdir):
    self.path = pathlib.Path(logdir) / ".lock"
    self._file = None

  def acquire(self) -> "RunLock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "an unknown process"
      f.close()
      raise RunLocked(
          f"{self.path.parent} is in use by {holder}. Wait for it to finish, "
          f"stop it (kill <pid>; it saves a checkpoint first), or give this "
          "command another --logdir.") from None
    f.seek(0)
    previous = f.read().strip()
    if previous:
      logging.warning("Taking over the lock of %s, left by %s, which is no "
                      "longer running.", self.path.parent, previous)
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    self._file = f
    return self

  def release(self) -> None:
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
