"""`plain_lstm`: Eq. 10 of Huisman et al. 2023 (mean-pooled states) and the
order invariance it buys; regression on sine through main.py."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from helpers import build, tiny_config
from helpers import with_options

REPO = pathlib.Path(__file__).resolve().parents[1]


def _episode(task):
  return tf.nest.map_structure(lambda t: t[0], next(iter(task.train_dataset(0))))


def test_state_is_the_mean_of_the_cells_per_example_states(tmp_path):
  config = with_options(tiny_config(tmp_path, method="plain_lstm"),
                        support_passes=2)
  task, method, _ = build(config)
  e = _episode(task)
  got = method.run(e.support_images, e.support_labels, e.query_images).outputs
  # The same computation one support example at a time, pooled by hand.
  pairs = tf.concat([method._features(e.support_images),
                     tf.one_hot(e.support_labels, config.way)], axis=1)
  h = c = tf.zeros([1, method.cell.units])
  for _ in range(2):
    outs = [method.cell(pairs[i:i + 1], [h, c])[1] for i in range(len(pairs))]
    h = tf.add_n([o[0] for o in outs]) / len(outs)
    c = tf.add_n([o[1] for o in outs]) / len(outs)
  feats = method._features(e.query_images)
  queries = tf.concat([feats, tf.zeros([feats.shape[0], config.way])], 1)
  q = queries.shape[0]
  want = method.head(method.cell(queries, [tf.tile(h, [q, 1]),
                                           tf.tile(c, [q, 1])])[0])
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_support_order_does_not_change_the_predictions(tmp_path):
  task, method, _ = build(tiny_config(tmp_path, method="plain_lstm"))
  e = _episode(task)
  order = np.random.default_rng(0).permutation(e.support_labels.shape[0])
  a = method.run(e.support_images, e.support_labels, e.query_images).outputs
  b = method.run(tf.gather(e.support_images, order),
                 tf.gather(e.support_labels, order), e.query_images).outputs
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_sine_regression_runs_end_to_end(tmp_path):
  out = subprocess.run(
      [sys.executable, "main.py", "--dataset=sine", "--method=plain_lstm",
       "--shots=5", "--episodes=40", "--val_every=20", "--val_episodes=10",
       "--test_episodes=10", f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  last = out.stdout.strip().splitlines()[-1]
  m = re.fullmatch(r"RESULT dataset=sine ways=1 shots=5 split=test "
                   r"metric=mse mean=([\d.]+) .* method=plain_lstm "
                   r"queries=transductive", last)
  assert m and np.isfinite(float(m.group(1))), last
