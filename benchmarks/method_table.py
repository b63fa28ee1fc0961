"""Every method on one harness: train, validate and test each at the same
budget, then print the comparison table.

  python benchmarks/method_table.py --dataset=omniglot --shots=1 \
      --episodes=2000 --root=../runs/table [--methods=all] \
      [--flags=--filters=64 --suffix=_f64] [--output=table.md]

For each method it runs

  python main.py --dataset=D --shots=K --method=M [--episodes=N] --seed=S \
      [FLAGS] --logdir=ROOT/D_5wKs_M[SUFFIX]

(the 5w is the dataset's way count; sine runs are named D_Ks_M) unless that
run directory already holds its test RESULT, in which case the run is only
read: a finished row is never trained or tested again, and an interrupted
one resumes (main.py resumes from the run directory's checkpoint). Each
method's output goes to ROOT/NAME.log and the wall time of each invocation
is appended to ROOT/NAME.seconds.

The table then has, per method: the command, the test RESULT (mean ± 95 %
interval; transductive for images, as in the papers), the best validation
value and the episode it was reached at (the model tested), the number of
meta-updates (episodes / the method's meta-batch size), the summed wall
time of the invocations, and the median training episodes per second logged
in the run's `train/` summaries (validation and checkpoint time excluded).
A method whose run failed gets a row with the last line of its error.
`--norun` only reads the runs already there.
"""

import json
import pathlib
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

from metalstm.results import parse_result_line
from run_logs import read_scalars

REPO = pathlib.Path(__file__).resolve().parents[1]

flags.DEFINE_string("dataset", None, "omniglot, mini_imagenet or sine.")
flags.DEFINE_integer("shots", 1, "Support examples per class (sine: "
                     "points per task).")
flags.DEFINE_list("methods", ["all"], "Registry names, or all.")
flags.DEFINE_integer("episodes", None, "The matched training budget "
                     "(default: each run's protocol length).")
flags.DEFINE_integer("seed", 0, "main.py --seed of every run.")
flags.DEFINE_list("flags", [], "Further main.py flags for every run, e.g. "
                  "--flags=--filters=64.")
flags.DEFINE_string("suffix", "", "Appended to each run directory's name "
                    "(e.g. _f64 for a --filters=64 table).")
flags.DEFINE_string("root", "../runs/table", "Directory of the runs.")
flags.DEFINE_bool("run", True, "Train and test the runs not finished yet "
                  "(--norun: only read them).")
flags.DEFINE_string("output", None, "Also write the table (Markdown) here.")
flags.mark_flag_as_required("dataset")
FLAGS = flags.FLAGS


def method_names(requested: list[str]) -> list[str]:
  import metalstm_tf.methods  # noqa: F401  (registers every method)
  from metalstm_tf.methods import registry
  if requested == ["all"]:
    return list(registry.REGISTRY)
  for name in requested:
    registry.get(name)  # a clear error for an unknown name
  return requested


def run_name(dataset: str, shots: int, method: str, suffix: str) -> str:
  ways = "" if dataset == "sine" else "5w"
  return f"{dataset}_{ways}{shots}s_{method}{suffix}"


def main_command(method: str, logdir: pathlib.Path) -> list[str]:
  command = [f"--dataset={FLAGS.dataset}", f"--shots={FLAGS.shots}",
             f"--method={method}"]
  if FLAGS.episodes is not None:
    command.append(f"--episodes={FLAGS.episodes}")
  return command + [f"--seed={FLAGS.seed}", *FLAGS.flags,
                    f"--logdir={logdir}"]


def test_result(logdir: pathlib.Path) -> dict | None:
  """The fields of the run's own test RESULT (transductive if both)."""
  path = logdir / "result.txt"
  if not path.exists():
    return None
  rows = []
  for line in path.read_text().splitlines():
    if not line.startswith("RESULT "):
      continue
    fields = parse_result_line(line)
    if fields.get("split") == "test" and "test_dataset" not in fields:
      rows.append(fields)
  rows.sort(key=lambda f: f.get("queries") != "transductive")
  return rows[0] if rows else None


def train(method: str, logdir: pathlib.Path) -> None:
  root, name = logdir.parent, logdir.name
  command = [sys.executable, str(REPO / "main.py"),
             *main_command(method, logdir)]
  print(f"{name}: {' '.join(command[1:])}", flush=True)
  start = time.time()
  try:
    with open(root / f"{name}.log", "a") as log:
      code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            check=False).returncode
  finally:  # an interrupted invocation's time counts too
    with open(root / f"{name}.seconds", "a") as f:
      f.write(f"{time.time() - start:.1f}\n")
  print(f"{name}: exit code {code} after {time.time() - start:.0f} s",
        flush=True)


def last_error(root: pathlib.Path, name: str) -> str:
  log = root / f"{name}.log"
  lines = [l.strip() for l in log.read_text().splitlines()
           if l.strip()] if log.exists() else []
  errors = [l for l in lines if "Error" in l or "error:" in l]
  return (errors or lines or ["not run"])[-1][:160]


def row(method: str, logdir: pathlib.Path) -> list[str]:
  root, name = logdir.parent, logdir.name
  shown = " ".join(["python main.py", *main_command(method, logdir)])
  result = test_result(logdir)
  if result is None:
    return [f"`{method}`", f"`{shown}`", f"no test RESULT: "
            f"{last_error(root, name)}", "", "", "", ""]
  metric = result["metric"]
  unit = " %" if metric == "accuracy" else ""
  test = f"{result['mean']} ± {result['ci95']}{unit}"
  val = read_scalars(logdir / "val").get(metric, {})
  if val:
    pick = max if metric == "accuracy" else min
    episode = pick(val, key=val.get)
    best = f"{val[episode]:.{2 if metric == 'accuracy' else 4}f}{unit} at " \
           f"{episode:,}"
  else:
    best = "none logged"
  seconds_file = root / f"{name}.seconds"
  seconds = sum(float(s) for s in seconds_file.read_text().split()) \
      if seconds_file.exists() else float("nan")
  rates = list(read_scalars(logdir / "train").get(
      "episodes_per_second", {}).values())
  rate = f"{statistics.median(rates):.2f}" if rates else "not logged"
  config = json.loads((logdir / "config.json").read_text())
  updates = f"{-(-config['episodes'] // config['meta_batch_size']):,}"
  return [f"`{method}`", f"`{shown}`", test, best, updates,
          f"{seconds / 60:.1f} min", rate]


def main(argv):
  del argv
  root = pathlib.Path(FLAGS.root)
  root.mkdir(parents=True, exist_ok=True)
  runs = [(method, root / run_name(FLAGS.dataset, FLAGS.shots, method,
                                    FLAGS.suffix))
          for method in method_names(FLAGS.methods)]
  for method, logdir in runs:
    if FLAGS.run and test_result(logdir) is None:
      train(method, logdir)
  header = ["method", "command", "test", "best validation (episode)",
            "meta-updates", "wall time", "training episodes/s"]
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  for method, logdir in runs:
    lines.append("| " + " | ".join(row(method, logdir)) + " |")
  table = "\n".join(lines)
  print(table)
  if FLAGS.output:
    pathlib.Path(FLAGS.output).write_text(table + "\n")


if __name__ == "__main__":
  app.run(main)
