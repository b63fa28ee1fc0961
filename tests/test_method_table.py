"""benchmarks/method_table.py: one short run per method, then the table."""

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO


def table(root, *extra):
  out = subprocess.run(
      [sys.executable, "benchmarks/method_table.py", "--dataset=sine",
       "--shots=5", "--methods=fomaml,protonet", "--episodes=20",
       "--flags=--val_every=10,--val_episodes=5,--test_episodes=5,"
       "--inner_steps=2", f"--root={root}", *extra],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


@pytest.mark.slow
def test_table_of_a_finished_and_a_refused_method(tmp_path):
  root = tmp_path / "table"
  stdout = table(root)
  rows = {m: line for line in stdout.splitlines()
          for m in ("fomaml", "protonet") if line.startswith(f"| `{m}`")}
  run = root / "sine_5s_fomaml"
  result = (run / "result.txt").read_text()
  mean, ci = re.search(r"split=test metric=mse mean=(\S+) ci95=(\S+)",
                       result).groups()
  cells = [c.strip() for c in rows["fomaml"].strip("|").split("|")]
  assert cells[1] == (f"`python main.py --dataset=sine --shots=5 "
                      f"--method=fomaml --episodes=20 --seed=0 "
                      f"--val_every=10 --val_episodes=5 --test_episodes=5 "
                      f"--inner_steps=2 --logdir={run}`")
  assert cells[2] == f"{mean} ± {ci}"
  # The best validation is the one the log reports lowest.
  log = (root / "sine_5s_fomaml.log").read_text()
  logged = {int(e): float(v) for e, v in re.findall(
      r"Validation at episode (\d+): mse (\S+)", log)}
  best = min(logged, key=logged.get)
  assert cells[3] == f"{logged[best]:.4f} at {best:,}"
  batch = json.loads((run / "config.json").read_text())["meta_batch_size"]
  assert cells[4] == str(-(-20 // batch))  # meta-updates
  assert float(cells[5].split()[0]) > 0  # minutes
  assert float(cells[6]) > 0  # training episodes/s
  # ProtoNet does not regress: its row says why instead of a result.
  assert "no test RESULT" in rows["protonet"]
  assert "needs --dataset=omniglot" in rows["protonet"]

  # A second call reads the finished run without training or testing it
  # again, and retries the failed one.
  again = table(root)
  assert rows["fomaml"] in again
  assert len((root / "sine_5s_fomaml.seconds").read_text().split()) == 1
  assert len((root / "sine_5s_protonet.seconds").read_text().split()) == 2
  assert (run / "result.txt").read_text() == result
  # --norun only reads.
  table(root, "--norun", f"--output={tmp_path / 'table.md'}")
  assert len((root / "sine_5s_protonet.seconds").read_text().split()) == 2
  assert rows["fomaml"] in (tmp_path / "table.md").read_text()
