"""The learners that learn in a recurrent state, not by gradients:
`plain_lstm` (Huisman et al. 2023's Eq. 10, mean-pooled states) and
`op_lstm` (their Eqs. 12-17: outer-product updates of the output layer on
images, of every layer of the sine MLP with messages passed back), each
recomputed by hand; both invariant to the support set's order; both
regress sine through main.py."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import build, tiny_config, with_options
from metalstm_tf import methods
from metalstm_tf import sine

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


def test_stacked_layers_pool_each_layers_state(tmp_path):
  config = with_options(tiny_config(tmp_path, method="plain_lstm"),
                        support_passes=2, lstm_layers=2, lstm_units=6)
  task, method, _ = build(config)
  assert len(method.cells) == 2
  e = _episode(task)
  got = method.run(e.support_images, e.support_labels, e.query_images).outputs
  pairs = tf.concat([method._features(e.support_images),
                     tf.one_hot(e.support_labels, config.way)], axis=1)
  zero = lambda: [tf.zeros([1, 6]), tf.zeros([1, 6])]
  states = [zero(), zero()]
  for _ in range(2):  # each example alone through both layers, then pooled
    per_layer = [[], []]
    for i in range(len(pairs)):
      x = pairs[i:i + 1]
      for k, cell in enumerate(method.cells):
        x, new = cell(x, states[k])
        per_layer[k].append(new)
    states = [[tf.add_n([o[j] for o in outs]) / len(outs) for j in (0, 1)]
              for outs in per_layer]
  feats = method._features(e.query_images)
  x = tf.concat([feats, tf.zeros([feats.shape[0], config.way])], 1)
  for k, cell in enumerate(method.cells):
    x, _ = cell(x, [tf.tile(s, [x.shape[0], 1]) for s in states[k]])
  np.testing.assert_allclose(got, method.head(x), atol=1e-5)


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


def _sine_op_lstm(tmp_path, **options):
  config = with_options(tiny_config(tmp_path, method="op_lstm",
                                    dataset="sine", way=1, shot=5,
                                    queries=7), **options)
  task = sine.sine_task(config)
  return task, methods.build(config, task.learner)


def _cell_values(cells, z):
  """The coordinate-wise LSTM's hidden value for each row of `z` `[N, 2]`,
  every row from zero states (the first pass)."""
  zeros = lambda u: [tf.zeros([len(z), u]), tf.zeros([len(z), u])]
  out1, _ = cells[0](tf.constant(z, tf.float32), zeros(cells[0].units))
  out2, _ = cells[1](out1, zeros(1))
  return out2.numpy()[:, 0]


def test_sine_pass_updates_every_layer_with_messages_passed_back(tmp_path):
  """One pass on the 1-40-40-1 MLP, by hand: the output layer's LSTM reads
  (prediction, target), each hidden layer's reads (activation, H^T h of the
  layer above), and every H moves by the mean normalised outer product."""
  task, method = _sine_op_lstm(tmp_path, op_passes=1, op_step=0.3)
  e = _episode(task)
  x = e.support_images.numpy()
  y = e.support_labels.numpy().reshape(-1, 1)
  hs = [w.numpy() for w in method.h0s]
  bs = [b.numpy() for b in method.biases]
  assert [w.shape for w in hs] == [(40, 1), (40, 40), (1, 40)]
  acts = [x]
  for k, (w, b) in enumerate(zip(hs, bs)):
    pre = acts[-1] @ w.T + b
    acts.append(pre if k == 2 else np.maximum(pre, 0))
  m = len(x)
  h = [None, None, None]
  h[2] = _cell_values(method.cells, np.concatenate([acts[3], y], 1)
                      ).reshape(m, 1)
  for k in (1, 0):
    message = h[k + 1] @ hs[k + 1]  # row i: H_{k+1}^T h_{k+1}(x_i)
    z = np.stack([acts[k + 1], message], -1).reshape(-1, 2)
    h[k] = _cell_values(method.hidden_cells, z).reshape(m, -1)
  new = []
  for k in range(3):
    update = sum(np.outer(h[k][i], acts[k][i]) /
                 max(np.linalg.norm(np.outer(h[k][i], acts[k][i])), 1e-12)
                 for i in range(m))
    new.append(hs[k] + 0.3 * update / m)
  q = e.query_images.numpy()
  for k, (w, b) in enumerate(zip(new, bs)):
    q = q @ w.T + b
    q = q if k == 2 else np.maximum(q, 0)
  got = method.run(e.support_images, e.support_labels,
                   e.query_images).outputs
  np.testing.assert_allclose(got, q, rtol=1e-4, atol=1e-5)
  # Every layer moved: the hidden layers are adapted too.
  assert all(np.abs(n - w).max() > 0 for n, w in zip(new, hs))


def test_sine_support_order_does_not_change_the_predictions(tmp_path):
  task, method = _sine_op_lstm(tmp_path)
  e = _episode(task)
  order = np.random.default_rng(0).permutation(5)
  a = method.run(e.support_images, e.support_labels, e.query_images).outputs
  b = method.run(tf.gather(e.support_images, order),
                 tf.gather(e.support_labels, order), e.query_images).outputs
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", ["example", "pooled"])
def test_update_normalises_each_outer_product_or_their_mean(tmp_path,
                                                            normalize):
  _, method = _sine_op_lstm(tmp_path, op_normalize=normalize)
  rng = np.random.default_rng(1)
  h, a = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))
  outers = [np.outer(h[i], a[i]) for i in range(4)]
  if normalize == "example":
    want = sum(o / np.linalg.norm(o) for o in outers) / 4
  else:
    mean = sum(outers) / 4
    want = mean / np.linalg.norm(mean)
  got = method._update(tf.constant(h, tf.float32), tf.constant(a, tf.float32),
                       4.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_learned_step_is_a_meta_parameter_with_a_gradient(tmp_path):
  task, method = _sine_op_lstm(tmp_path, op_learn_step=True, op_step=0.3)
  assert any(w.name == "op_step" for w in method.trainable_weights)
  assert float(method.summaries()["op_step"]) == pytest.approx(0.3)
  e = _episode(task)
  with tf.GradientTape() as tape:
    out = method.run(e.support_images, e.support_labels, e.query_images)
    loss = method.loss(out.outputs, e.query_labels)
  grad = tape.gradient(loss, method.step)
  assert grad is not None and np.isfinite(grad) and float(grad) != 0.0


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
