"""Atomic writes and the removal of what killed writers leave behind."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from data_prep import atomic, cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid() -> int:
  proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  return int(proc.stdout)


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
  dest = tmp_path / "record.json"
  atomic.atomic_write_text(dest, "old")
  with pytest.raises(RuntimeError):
    with atomic.atomic_path(dest) as tmp:
      tmp.write_text("half")
      raise RuntimeError("disk full")
  assert dest.read_text() == "old"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
  atomic.atomic_write_text(dest, "new")
  assert dest.read_text() == "new"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_directory_is_replaced_whole(tmp_path):
  dest = tmp_path / "saved_model"
  for version in ("1", "2"):
    with atomic.atomic_path(dest, directory=True) as tmp:
      (tmp / "version").write_text(version)
  assert (dest / "version").read_text() == "2"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_leftovers_of_dead_writers_go_and_live_ones_stay(tmp_path):
  dead = tmp_path / f"x.npy.partial-{_dead_pid()}-0123abcd.npy"
  dead.write_bytes(b"0" * 100)
  dead_dir = tmp_path / f"saved_model.partial-{_dead_pid()}-89abcdef"
  dead_dir.mkdir()
  (dead_dir / "saved_model.pb").write_bytes(b"")
  live = tmp_path / f"y.npy.partial-{os.getpid()}-0123abcd.npy"
  live.write_bytes(b"")
  kept = tmp_path / "z.npy"
  kept.write_bytes(b"")
  removed = atomic.remove_leftovers(tmp_path)
  assert sorted(removed) == sorted([dead, dead_dir])
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
      [live.name, kept.name])


_SLOW_BUILD = """
import sys, time, numpy as np
from data_prep import cache
def fill(a):
  a[:] = 1
  print("filling", flush=True)
  time.sleep(60)
cache.build(__import__("pathlib").Path(sys.argv[1]), "arr", [["f", 1, 1]],
            (1000, 1000), np.uint8, fill)
"""


def test_a_cache_build_killed_midway_leaves_nothing_after_the_next(tmp_path):
  """`kill -9` during a cache build: no valid entry, and the next build
  removes the killed one's temporary array."""
  proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(tmp_path)],
                          cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": REPO})
  assert proc.stdout.readline().strip() == "filling"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert any(".partial-" in p.name for p in tmp_path.iterdir())
  assert cache.load(tmp_path, "arr", [["f", 1, 1]]) is None
  array, _ = cache.build(tmp_path, "arr", [["f", 1, 1]], (10,), np.uint8,
                         lambda a: a.fill(2))
  assert array.tolist() == [2] * 10
  assert sorted(p.name for p in tmp_path.iterdir()) == ["arr.json",
                                                         "arr.npy"]
