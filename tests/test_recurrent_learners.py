"""The learners that learn in a recurrent state, not by gradients:
`plain_lstm` (Huisman et al. 2023's Eq. 10, mean-pooled states) and
`op_lstm` (their Eqs. 14-17, outer-product updates of the output layer),
each recomputed by hand; both invariant to the support set's order; both
regress sine through main.py."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import build, tiny_config, with_options

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ["plain_lstm", "op_lstm"]


def _episode(task):
  return tf.nest.map_structure(lambda t: t[0],
                               next(iter(task.train_dataset(0))))


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


def test_one_pass_is_the_pooled_normalised_outer_product(tmp_path):
  config = with_options(tiny_config(tmp_path, method="op_lstm"),
                        op_passes=1, op_step=0.7)
  task, method, _ = build(config)
  e = _episode(task)
  got = method.run(e.support_images, e.support_labels, e.query_images).outputs
  a = method._features(e.support_images).numpy()  # [M, D]
  h0, b = method.h0.numpy(), method.bias.numpy()
  pred = tf.nn.softmax(a @ h0.T + b).numpy()
  target = np.eye(config.way)[e.support_labels.numpy()]
  update = np.zeros_like(h0)
  for i in range(len(a)):  # every example, every output node, from zeros
    h = np.zeros(config.way)
    for j in range(config.way):
      z = np.array([[pred[i, j], target[i, j]]], np.float32)
      zeros = lambda u: [tf.zeros([1, u]), tf.zeros([1, u])]
      out1, _ = method.cells[0](z, zeros(method.cells[0].units))
      out2, _ = method.cells[1](out1, zeros(1))
      h[j] = float(out2[0, 0])
    outer = np.outer(h, a[i])
    update += outer / np.linalg.norm(outer)
  h1 = h0 + 0.7 * update / len(a)
  q = method._features(e.query_images).numpy()
  np.testing.assert_allclose(got, q @ h1.T + b, atol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_support_order_does_not_change_the_predictions(tmp_path, name):
  task, method, _ = build(tiny_config(tmp_path, method=name))
  e = _episode(task)
  order = np.random.default_rng(0).permutation(e.support_labels.shape[0])
  a = method.run(e.support_images, e.support_labels, e.query_images).outputs
  b = method.run(tf.gather(e.support_images, order),
                 tf.gather(e.support_labels, order), e.query_images).outputs
  # Equal up to the order of the pooled sums' rounding (OP-LSTM's logits
  # are scaled by its step of 10).
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_sine_regression_runs_end_to_end(tmp_path, name):
  out = subprocess.run(
      [sys.executable, "main.py", "--dataset=sine", f"--method={name}",
       "--shots=5", "--episodes=40", "--val_every=20", "--val_episodes=10",
       "--test_episodes=10", f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  last = out.stdout.strip().splitlines()[-1]
  m = re.fullmatch(r"RESULT dataset=sine ways=1 shots=5 split=test "
                   rf"metric=mse mean=([\d.]+) .* method={name} "
                   r"queries=transductive", last)
  assert m and np.isfinite(float(m.group(1))), last
