"""Each update rule against its own equations on small hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from metalstm_tf import inner_loop
from metalstm_tf.learners import MLPLearner
from metalstm_tf.update_rules import (SGD, MetaCompleteLSTM, MetaGRU,
                                      MetaSGD, Turtle)

P = 7


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  theta = tf.constant(rng.normal(size=P).astype(np.float32))
  grad = tf.constant(rng.normal(size=P).astype(np.float32))
  return theta, grad, tf.constant(0.7)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _layer1(rule, grad, loss, h, c):
  """Layer 1 in numpy, coordinate by coordinate (preprocessing off)."""
  kernel, bias = rule.lstm_kernel.numpy(), rule.lstm_bias.numpy()
  n = rule.hidden_size
  hs, cs = [], []
  for j in range(P):
    x = np.concatenate([[loss], [grad[j]], h[:, j]])
    z = x @ kernel + bias
    zi, zf, zg, zo = z[:n], z[n:2 * n], z[2 * n:3 * n], z[3 * n:]
    cj = _sigmoid(zf) * c[:, j] + _sigmoid(zi) * np.tanh(zg)
    hs.append(_sigmoid(zo) * np.tanh(cj))
    cs.append(cj)
  return np.stack(hs, 1), np.stack(cs, 1)


def _gate(w, b, h, theta, recurrent):
  w = w.numpy()[:, 0]
  n = len(w) - 2
  return _sigmoid(h.T @ w[:n] + w[n] * theta + w[n + 1] * recurrent +
                  b.numpy()[0])


def test_gru_cell_follows_its_equations_for_two_steps():
  theta0, grad, loss = _inputs()
  rule = MetaGRU(theta0, hidden_size=3, preprocess=False, seed=1)
  assert 5.0 <= float(rule.b_update.numpy()[0]) <= 6.0
  state = rule.init_state(theta0)
  theta, h, c, z = theta0.numpy(), np.zeros((3, P)), np.zeros((3, P)), np.zeros(P)
  got = theta0
  for _ in range(2):
    got, state = rule.step(got, grad, loss, state)
    h, c = _layer1(rule, grad.numpy(), 0.7, h, c)
    z = _gate(rule.w_update, rule.b_update, h, theta, z)
    theta = z * theta - (1.0 - z) * grad.numpy()
    np.testing.assert_allclose(got.numpy(), theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.z.numpy(), z, rtol=1e-5, atol=1e-6)


def test_complete_lstm_cell_follows_its_equations_for_two_steps():
  theta0, grad, loss = _inputs(1)
  rule = MetaCompleteLSTM(theta0, hidden_size=3, preprocess=False, seed=2)
  assert float(rule.b_output.numpy()[0]) == 0.0
  state = rule.init_state(theta0)
  theta, h, c, h2 = theta0.numpy(), np.zeros((3, P)), np.zeros((3, P)), np.zeros(P)
  got = theta0
  for _ in range(2):
    got, state = rule.step(got, grad, loss, state)
    h, c = _layer1(rule, grad.numpy(), 0.7, h, c)
    f = _gate(rule.w_forget, rule.b_forget, h, theta, h2)
    i = _gate(rule.w_input, rule.b_input, h, theta, h2)
    o = _gate(rule.w_output, rule.b_output, h, theta, h2)
    theta = f * theta - i * grad.numpy()
    h2 = o * np.tanh(theta)
    np.testing.assert_allclose(got.numpy(), theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h2.numpy(), h2, rtol=1e-5, atol=1e-6)
  assert set(rule.gates(state)) == {"input_gate", "forget_gate",
                                    "output_gate"}


def _plain_sgd(learner, x, y, steps, lr):
  theta = learner.initial_theta()
  for _ in range(steps):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = learner.loss(learner.apply_theta(theta, x), y)
    theta = theta - lr * tape.gradient(loss, theta)
  return theta


@pytest.mark.parametrize("make", [
    lambda t: SGD(t, step_size=0.05),                      # maml / fomaml
    lambda t: SGD(t, step_size=0.05, learn_step_size=True),  # adaptive_sgd
    lambda t: MetaSGD(t, alpha_range=(0.05, 0.05)),        # meta_sgd
])
def test_sgd_family_with_a_fixed_step_is_plain_sgd(make):
  learner = MLPLearner((1, 8, 1), seed=0)
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(-5, 5, (10, 1)).astype(np.float32))
  y = tf.sin(x)
  rule = make(learner.initial_theta())
  got = inner_loop.adapt(learner, rule, x, y, 3, 10).theta
  want = _plain_sgd(learner, x, y, 3, 0.05)
  np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_meta_sgd_alpha_starts_in_its_range_and_scales_each_coordinate():
  theta0, grad, loss = _inputs()
  rule = MetaSGD(theta0, alpha_range=(0.005, 0.1), seed=0)
  alpha = rule.alpha.numpy()
  assert ((alpha >= 0.005) & (alpha <= 0.1)).all() and alpha.std() > 0
  got, _ = rule.step(theta0, grad, loss, rule.init_state(theta0))
  np.testing.assert_allclose(got.numpy(), theta0.numpy() - alpha * grad.numpy(),
                             rtol=1e-6)


def test_turtle_network_shape_alpha_start_and_update():
  theta0, grad, loss = _inputs()
  rule = Turtle(theta0, hidden_layers=5, hidden_units=20,
                inputs=("grad", "loss", "time"), seed=0)
  shapes = [tuple(w.shape) for w in rule.kernels]
  assert shapes == [(3, 20)] + [(20, 20)] * 4 + [(20, 1)]
  alpha = rule.alpha.numpy()
  assert alpha.shape == (P,) and ((alpha >= 0) & (alpha <= 1)).all()
  state = rule.init_state(theta0)
  for t in range(2):
    features = np.stack([grad.numpy(), np.full(P, 0.7), np.full(P, t)], 1)
    x = features
    for j, (w, b) in enumerate(zip(rule.kernels, rule.biases)):
      x = x @ w.numpy() + b.numpy()
      if j < 5:
        x = np.maximum(x, 0)
    got, state = rule.step(theta0, grad, loss, state)
    np.testing.assert_allclose(got.numpy(), theta0.numpy() + alpha * x[:, 0],
                               rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="must start with 'grad'"):
    Turtle(theta0, inputs=("loss",))
