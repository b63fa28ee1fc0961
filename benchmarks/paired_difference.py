"""The difference between two runs' tests, episode by episode.

  python benchmarks/paired_difference.py --runs=runs/A,runs/B

A run's test writes each test episode's accuracy (or error) to
`test_episodes.csv` (transductive) and `test_episodes_per_query.csv`, in
episode order; runs with the same dataset, way, shot and seed are tested on
the same episodes. Their difference episode by episode has a much narrower
interval than either test's own, since both runs meet the same easy and hard
episodes. Prints, for each query mode both runs have, the mean difference
A - B with its 95 % interval (1.96 std / sqrt(n), as the tests' own
intervals) and on how many episodes each run was ahead.
"""

import pathlib

from absl import app
from absl import flags
import numpy as np

from metalstm_tf.trainer import mean_and_ci95

flags.DEFINE_list("runs", None, "Two run directories (main.py --logdir): A,B.")
FLAGS = flags.FLAGS

FILES = {"transductive": "test_episodes.csv",
         "per_query": "test_episodes_per_query.csv"}


def episode_values(path: pathlib.Path) -> np.ndarray:
  """The metric column of a test's episode CSV, checked to be in episode
  order."""
  table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
  if not np.array_equal(table[:, 0], np.arange(len(table))):
    raise ValueError(f"{path}: the episodes are not 0, 1, 2, ... in order.")
  return table[:, 1]


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
  """Mean and 95 % interval of a - b, and the episodes where each is ahead."""
  if a.shape != b.shape:
    raise ValueError(f"The tests have {len(a)} and {len(b)} episodes: a "
                     "paired difference needs the same test episodes "
                     "(the same --test_episodes, dataset, way, shot, seed).")
  mean, ci95 = mean_and_ci95(a - b)
  return {"mean": mean, "ci95": ci95, "episodes": len(a),
          "a_ahead": int((a > b).sum()), "b_ahead": int((a < b).sum())}


def main(argv):
  del argv
  if not FLAGS.runs or len(FLAGS.runs) != 2:
    raise app.UsageError("--runs takes two run directories: --runs=A,B.")
  a, b = (pathlib.Path(r) for r in FLAGS.runs)
  found = False
  for queries, name in FILES.items():
    if not ((a / name).is_file() and (b / name).is_file()):
      continue
    found = True
    d = paired_difference(episode_values(a / name), episode_values(b / name))
    print(f"{queries}: {a.name} - {b.name} = {d['mean']:+.2f} ± "
          f"{d['ci95']:.2f} over {d['episodes']} paired episodes; "
          f"{a.name} ahead on {d['a_ahead']}, {b.name} on {d['b_ahead']}",
          flush=True)
  if not found:
    raise app.UsageError(f"{a} and {b} do not both hold "
                         f"{' or '.join(FILES.values())}: test them first "
                         "(python main.py --mode=test --logdir=RUN).")


if __name__ == "__main__":
  app.run(main)
