"""benchmarks/learning_curves.py on a real (short) training run."""

import re
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import short_sine_command


@pytest.mark.slow
def test_learning_curves_of_a_short_run(tmp_path):
  run = tmp_path / "run"
  train = subprocess.run(
      short_sine_command(run, val_every=10), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert train.returncode == 0, train.stderr[-3000:]
  logged = {int(e): float(v) for e, v in re.findall(
      r"Validation at episode (\d+): mse (\S+)", train.stderr)}
  assert sorted(logged) == [10, 20, 30, 40]
  png = tmp_path / "curves.png"
  out = subprocess.run(
      [sys.executable, "benchmarks/learning_curves.py", f"--runs={run}",
       "--labels=sine", f"--output={png}", "--smooth=10"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert png.stat().st_size > 10_000  # axes, two curves and a legend
  match = re.search(r"train mse: (\d+) points.*val mse: (\d+) points, best "
                    r"(\S+) at episode (\d+)", out.stdout)
  assert match, out.stdout
  assert int(match.group(1)) >= 4 and int(match.group(2)) == 4
  episode = min(logged, key=logged.get)
  assert int(match.group(4)) == episode
  assert abs(float(match.group(3)) - logged[episode]) < 1e-3

  # --max_episode: the first half of the same run, and nothing before the first point.
  half = tmp_path / "half.png"
  out = subprocess.run(
      [sys.executable, "benchmarks/learning_curves.py", f"--runs={run}",
       f"--output={half}", "--smooth=10", "--max_episode=25"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  match = re.search(r"val mse: (\d+) points, best (\S+) at episode (\d+)",
                    out.stdout)
  assert match and int(match.group(1)) == 2, out.stdout
  early = {e: v for e, v in logged.items() if e <= 25}
  assert int(match.group(3)) == min(early, key=early.get)
  assert half.stat().st_size > 10_000
  out = subprocess.run(
      [sys.executable, "benchmarks/learning_curves.py", f"--runs={run}",
       f"--output={tmp_path / 'none.png'}", "--max_episode=1"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  assert "logged nothing up to episode 1" in out.stderr
  assert not (tmp_path / "none.png").exists()
