"""Writing files and directories so that nothing half-written is ever seen.

Every writer of this project (array caches, downloads, run records, the
compiled kernel, SavedModels) writes into a temporary path beside its
destination and renames it into place only once complete, through
`atomic_path`. The temporary name carries the writer's PID, so that the
leftovers of a killed writer can be told from a live one's and removed by
`remove_leftovers`.
"""

import contextlib
import os
import pathlib
import re
import shutil
import uuid

from absl import logging

_MARK = ".partial-"  # <dest name>.partial-<pid>-<random><suffix>
_LEFTOVER = re.compile(re.escape(_MARK) + r"(\d+)-[0-9a-f]{8}")


def _remove(path: pathlib.Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path, ignore_errors=True)
  elif path.exists() or path.is_symlink():
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(dest, suffix: str = "", directory: bool = False):
  """Yields a temporary path beside `dest` to write; renames it to `dest`
  when the block succeeds and deletes it when it raises.

  Args:
    dest: the final path.
    suffix: ending of the temporary name (e.g. `.npy`, for writers that
      insist on one).
    directory: the temporary path is created as an empty directory; an
      existing `dest` directory is replaced (it is moved aside first, so a
      crash leaves either the old or the new one under `dest`, or the new one
      beside an `.old` copy).
  """
  dest = pathlib.Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  tmp = dest.with_name(
      f"{dest.name}{_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
  if directory:
    tmp.mkdir()
  try:
    yield tmp
    if directory and dest.exists():
      old = dest.with_name(dest.name + ".old")
      _remove(old)
      os.replace(dest, old)
      os.replace(tmp, dest)
      _remove(old)
    else:
      os.replace(tmp, dest)
  except BaseException:
    _remove(tmp)
    raise


def atomic_write_text(path, text: str) -> None:
  """Writes `text` to `path`: a reader sees the old file or the new one,
  never a partial one."""
  with atomic_path(path) as tmp:
    tmp.write_text(text)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's live process.
    return True
  return True


def remove_leftovers(directory) -> list[pathlib.Path]:
  """Deletes the temporary paths of `directory` whose writer process is
  gone (killed mid-write); returns them. Live writers' files are kept."""
  directory = pathlib.Path(directory)
  removed = []
  if not directory.is_dir():
    return removed
  for path in directory.iterdir():
    match = _LEFTOVER.search(path.name)
    if match and not _alive(int(match.group(1))):
      _remove(path)
      removed.append(path)
  if removed:
    logging.info("Removed %d temporary file(s) left by interrupted writers "
                 "in %s.", len(removed), directory)
  return removed
