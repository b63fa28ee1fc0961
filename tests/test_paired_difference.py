"""benchmarks/paired_difference.py: two runs' tests compared episode by
episode."""

import subprocess
import sys

import numpy as np

from conftest import REPO


def _run(tmp_path, name, transductive, per_query=None):
  run = tmp_path / name
  run.mkdir()
  for file, values in (("test_episodes.csv", transductive),
                       ("test_episodes_per_query.csv", per_query)):
    if values is not None:
      rows = ["episode,accuracy,loss"] + [f"{i},{v},1.0"
                                          for i, v in enumerate(values)]
      (run / file).write_text("\n".join(rows) + "\n")
  return run


def _compare(*runs):
  return subprocess.run(
      [sys.executable, "benchmarks/paired_difference.py",
       "--runs=" + ",".join(str(r) for r in runs)],
      cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_difference_of_two_tests_on_the_same_episodes(tmp_path):
  a = [60.0, 40.0, 80.0, 20.0, 100.0]
  b = [40.0, 40.0, 60.0, 40.0, 80.0]
  out = _compare(_run(tmp_path, "a", a, per_query=b), _run(tmp_path, "b", b))
  assert out.returncode == 0, out.stderr[-2000:]
  d = np.subtract(a, b)  # +20, 0, +20, -20, +20: mean 8, std 16
  half = 1.96 * d.std() / np.sqrt(len(d))
  assert out.stdout.splitlines() == [
      f"transductive: a - b = +8.00 ± {half:.2f} over 5 paired episodes; "
      "a ahead on 3, b on 1"]


def test_tests_of_different_episodes_are_refused(tmp_path):
  out = _compare(_run(tmp_path, "a", [50.0] * 4), _run(tmp_path, "b", [50.0] * 5))
  assert out.returncode != 0
  assert "4 and 5 episodes" in out.stderr


def test_untested_runs_get_a_clear_error(tmp_path):
  out = _compare(_run(tmp_path, "a", [50.0]), tmp_path)
  assert out.returncode != 0
  assert "test them first" in out.stderr
