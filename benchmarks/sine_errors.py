"""Where a trained sine meta-learner's test error comes from.

  python benchmarks/sine_errors.py --logdir=runs/sine_10shot_seed0

Loads the best validated meta-learner of a finished sine run (its
`config.json` gives the setting), adapts on the run's fixed test tasks and
prints: the distribution of the query MSE over tasks (mean, median, tail,
the share of the total held by the worst tasks), the mean query MSE by
amplitude band, and the support MSE after adaptation (low support MSE with
high query MSE means the adapted learner fits its points but interpolates
badly between them; high support MSE means it underfits).
"""

import dataclasses
import json
import pathlib

from absl import app
from absl import flags
import numpy as np
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

from metalstm_tf import builder, sine
from metalstm_tf.config import TrainConfig
from metalstm_tf.episodes import Episode

flags.DEFINE_string("logdir", None, "Directory of a finished sine run.")
flags.DEFINE_integer("tasks", None, "Test tasks to analyse (default: the "
                     "run's --test_episodes).")
flags.DEFINE_integer("worst", 10, "Worst tasks to list.")
flags.mark_flag_as_required("logdir")
FLAGS = flags.FLAGS


def load_config(logdir: pathlib.Path) -> TrainConfig:
  path = logdir / "config.json"
  if not path.is_file():
    raise app.UsageError(f"{path} not found: --logdir must be the directory "
                         "of a run started with main.py.")
  # The run's own directory, even if it was moved after training.
  config = dataclasses.replace(TrainConfig.from_dict(json.loads(path.read_text())),
                               logdir=str(logdir))
  if config.dataset != "sine":
    raise app.UsageError(f"{logdir} is a {config.dataset} run; this script "
                         "analyses sine runs.")
  return config


def main(argv):
  del argv
  logdir = pathlib.Path(FLAGS.logdir)
  config = load_config(logdir)
  _, _, trainer = builder.build(config)
  trainer.restore_best()
  learner = trainer.learner
  num = FLAGS.tasks or config.test_episodes

  @tf.function
  def query_and_support_loss(episode):
    loss, _, _ = trainer.episode_loss(episode)
    fitted = trainer.method.run(episode.support_images, episode.support_labels,
                                episode.support_images).outputs
    return loss, learner.loss(fitted, episode.support_labels)

  query, support, amplitude = [], [], []
  for index in range(num):
    t = sine.eval_task(config, "test", index)
    losses = query_and_support_loss(Episode(*(tf.constant(a) for a in (
        t.support_x, t.support_y, t.query_x, t.query_y))))
    query.append(float(losses[0]))
    support.append(float(losses[1]))
    amplitude.append(t.amplitude)
  query, support, amplitude = map(np.array, (query, support, amplitude))

  order = np.argsort(-query)
  total = query.sum()
  print(f"{num} test tasks of {logdir} ({config.shot}-shot, "
        f"{config.inner_steps} steps, {config.method} {config.method_options})")
  print(f"query MSE: mean {query.mean():.5f}  median {np.median(query):.5f}  "
        f"p90 {np.percentile(query, 90):.5f}  p99 "
        f"{np.percentile(query, 99):.5f}  max {query.max():.4f}")
  for frac in (0.01, 0.05):
    k = max(1, int(round(frac * num)))
    print(f"worst {k} tasks ({frac:.0%}) hold {query[order[:k]].sum() / total:.0%}"
          " of the total query MSE")
  bands = np.linspace(*sine.AMPLITUDE, 6)
  for lo, hi in zip(bands[:-1], bands[1:]):
    mask = (amplitude >= lo) & (amplitude <= hi)
    print(f"amplitude {lo:.2f}-{hi:.2f}: {mask.sum():4d} tasks, mean query "
          f"MSE {query[mask].mean():.5f}")
  print(f"support MSE after adaptation: median {np.median(support):.5f}, "
        f"p90 {np.percentile(support, 90):.5f}")
  print(f"worst {FLAGS.worst} tasks (test index: query MSE, support MSE, "
        "amplitude):")
  for i in order[:FLAGS.worst]:
    print(f"  {i:5d}: {query[i]:.4f}  {support[i]:.5f}  {amplitude[i]:.2f}")


if __name__ == "__main__":
  app.run(main)
