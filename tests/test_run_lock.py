"""One process per run directory: a second one stops at once; a lock left by
a killed process is taken over with a warning."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from metalstm_tf.run_lock import RunLock, RunLocked


def test_second_holder_is_refused_with_the_holders_pid(tmp_path):
  lock = RunLock(tmp_path).acquire()
  try:
    with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
      RunLock(tmp_path).acquire()
    out = subprocess.run(
        [sys.executable, "main.py", "--dataset=sine", "--shots=5",
         f"--logdir={tmp_path}"], capture_output=True, text=True, cwd=REPO,
        timeout=300)
    assert out.returncode == 1
    assert f"is in use by pid {os.getpid()}" in out.stderr
    assert "another --logdir" in out.stderr
  finally:
    lock.release()
  RunLock(tmp_path).acquire().release()  # free again


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  (tmp_path / ".lock").write_text("pid 4000000 on some-host\n")
  lock = RunLock(tmp_path).acquire()
  try:
    assert "pid 4000000 on some-host" in caplog.text
    assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
  finally:
    lock.release()


def test_logdir_naming_a_file_is_refused(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  out = subprocess.run(
      [sys.executable, "main.py", "--dataset=sine", f"--logdir={path}"],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert out.returncode == 2
  assert "is a file, not a directory" in out.stderr
