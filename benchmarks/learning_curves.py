"""Learning curves of training runs, drawn from their TensorBoard logs.

  python benchmarks/learning_curves.py --runs=../runs/runs/mini_imagenet_5w1s_seed0 \
      --output=learning_curves.png [--labels=NAME,...] [--smooth=500] \
      [--max_episode=6000]

For each run directory (a `--logdir` of `main.py`) it reads the `train/` and
`val/` event files, plots the training metric (a running mean over
`--smooth` episodes) and the validation metric (every validation, with its
95 % interval where the run logged one) against episodes, one colour per
run, and writes one PNG. It also prints, per run, the points read and the
best validation value with its episode. A run resumed after an interruption
has several event files that may repeat episodes; the value logged last is
kept. `--max_episode` draws (and summarises) only the episodes up to it:
the first part of a longer run, beside a shorter run of the same budget.
"""

import pathlib

from absl import app
from absl import flags
import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from run_logs import read_scalars

flags.DEFINE_list("runs", None, "Run directories (main.py --logdir).")
flags.DEFINE_list("labels", None, "A legend label per run (default: the "
                  "directories' names).")
flags.DEFINE_string("output", "learning_curves.png", "PNG to write.")
flags.DEFINE_string("metric", None, "Scalar to plot (default: accuracy if "
                    "the runs logged it, else mse).")
flags.DEFINE_integer("smooth", 500, "Episodes of the training curve's "
                     "running mean.")
flags.DEFINE_string("title", None, "Figure title.")
flags.DEFINE_integer("max_episode", None, "Draw only the points up to this "
                     "episode (default: all).", lower_bound=1)
FLAGS = flags.FLAGS


def curve(points: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
  steps = np.array(sorted(points), dtype=np.int64)
  return steps, np.array([points[s] for s in steps], dtype=np.float64)


def running_mean(steps: np.ndarray, values: np.ndarray,
                 episodes: int) -> np.ndarray:
  """At each point, the mean of the points of the last `episodes` episodes
  (runs log training scalars every few episodes; fewer at the start)."""
  spacing = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
  window = max(1, int(round(episodes / max(spacing, 1.0))))
  sums = np.cumsum(np.concatenate([[0.0], values]))
  idx = np.arange(1, len(values) + 1)
  lo = np.maximum(idx - window, 0)
  return (sums[idx] - sums[lo]) / (idx - lo)


def up_to(scalars: dict[str, dict[int, float]],
          max_episode: int | None) -> dict[str, dict[int, float]]:
  """The scalars' points up to `max_episode` (all if None); a scalar left
  without points is dropped."""
  if max_episode is None:
    return scalars
  kept = {name: {s: v for s, v in points.items() if s <= max_episode}
          for name, points in scalars.items()}
  return {name: points for name, points in kept.items() if points}


def main(argv):
  del argv
  if not FLAGS.runs:
    raise app.UsageError("--runs is required.")
  labels = FLAGS.labels or [pathlib.Path(r).name for r in FLAGS.runs]
  if len(labels) != len(FLAGS.runs):
    raise app.UsageError("--labels needs one label per --runs entry.")
  logs = []
  for run in FLAGS.runs:
    run = pathlib.Path(run)
    train, val = read_scalars(run / "train"), read_scalars(run / "val")
    if not train and not val:
      raise app.UsageError(f"{run} has no train/ or val/ event files: is it "
                           "a main.py --logdir?")
    train, val = up_to(train, FLAGS.max_episode), up_to(val, FLAGS.max_episode)
    if not train and not val:
      raise app.UsageError(f"{run} logged nothing up to episode "
                           f"{FLAGS.max_episode}: raise --max_episode.")
    logs.append((train, val))
  metric = FLAGS.metric or (
      "accuracy" if any("accuracy" in t or "accuracy" in v for t, v in logs)
      else "mse")
  fig, ax = plt.subplots(figsize=(8, 5))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, ((train, val), label) in enumerate(zip(logs, labels)):
    colour = colours[i % len(colours)]
    summary = [label]
    if metric in train:
      steps, values = curve(train[metric])
      smooth = running_mean(steps, values, FLAGS.smooth)
      ax.plot(steps, smooth, color=colour,
              alpha=0.6, linewidth=1,
              label=f"{label}: training (mean of {FLAGS.smooth})")
      summary.append(f"train {metric}: {len(steps)} points, last running "
                     f"mean {smooth[-1]:.3f}")
    if metric in val:
      steps, values = curve(val[metric])
      ax.plot(steps, values, "o-", color=colour, markersize=3,
              label=f"{label}: validation")
      ci = val.get(f"{metric}_ci95")
      if ci and set(ci) >= set(steps.tolist()):
        half = np.array([ci[s] for s in steps])
        ax.fill_between(steps, values - half, values + half, color=colour,
                        alpha=0.15, linewidth=0)
      best = int(np.argmax(values) if metric == "accuracy" else
                 np.argmin(values))
      summary.append(f"val {metric}: {len(steps)} points, best "
                     f"{values[best]:.3f} at episode {steps[best]}")
    print("; ".join(summary))
  ax.set_xlabel("meta-training episode")
  ax.set_ylabel(metric + (" (%)" if metric == "accuracy" else ""))
  if metric == "mse":
    ax.set_yscale("log")
  ax.set_title(FLAGS.title or "Learning curves")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  output = pathlib.Path(FLAGS.output)
  output.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(output, dpi=110)
  print(f"wrote {output}")


if __name__ == "__main__":
  app.run(main)
