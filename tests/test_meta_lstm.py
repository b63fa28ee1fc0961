"""The meta-learner LSTM: preprocessing, gates, SGD limit, meta-gradients."""

import math

import numpy as np
import pytest
import tensorflow as tf

from metalstm_tf import inner_loop
from metalstm_tf.learners import Conv4Learner
from metalstm_tf.block_ops import BN_EPSILON, batch_norm
from metalstm_tf.preprocess import log_and_sign
from metalstm_tf.update_rules import SGD, MetaLSTM


def _episode(seed=0, n=6, way=3, size=16):
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.random((n, size, size, 1)), tf.float32)
  y = tf.constant(np.arange(n) % way, tf.int32)
  return x, y


def _learner_and_rule(seed=0, **kw):
  learner = Conv4Learner(3, (16, 16, 1), filters=4, seed=seed)
  return learner, MetaLSTM(learner.initial_theta(), hidden_size=5, seed=seed,
                           **kw)


def test_preprocessing_formula_on_both_sides_of_threshold():
  p = 10.0
  t = math.exp(-p)
  x = tf.constant([3.0, -0.5, t * 1.001, -t * 0.999, t * 0.5, 0.0], tf.float32)
  out = log_and_sign(x, p).numpy()
  for v, (a, b) in zip(x.numpy(), out):
    v = float(v)
    if abs(v) >= t:
      assert a == pytest.approx(math.log(abs(v)) / p, rel=1e-5)
      assert b == math.copysign(1.0, v)
    else:
      assert a == -1.0
      assert b == pytest.approx(math.exp(p) * v, rel=1e-5, abs=1e-7)
  # Continuity of the second output's magnitude at the boundary: e^p * t = 1.
  assert abs(out[3, 1]) == pytest.approx(1.0, rel=2e-3)
  # Feature-major (the meta-learner's layout): the same values, transposed.
  np.testing.assert_array_equal(log_and_sign(x, p, axis=0).numpy(), out.T)


def test_conv4_batch_norm_matches_the_moments_formula_to_second_order():
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(5, 6, 6, 4)) * 3 + 1, tf.float32)
  gamma = tf.constant(rng.random(4) + 0.5, tf.float32)
  beta = tf.constant(rng.normal(size=4), tf.float32)
  u = tf.constant(rng.normal(size=(5, 6, 6, 4)), tf.float32)

  def reference(x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=[0, 1, 2])
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, BN_EPSILON)

  out = {}
  for name, fn in (("moments", reference), ("fused", batch_norm)):
    with tf.GradientTape() as outer:
      outer.watch([x, gamma])
      with tf.GradientTape() as inner:
        inner.watch([x, gamma, beta])
        y = fn(x, gamma, beta)
        loss = tf.reduce_sum(tf.tanh(y) * u)
      grads = inner.gradient(loss, [x, gamma, beta])
      second = tf.reduce_sum(grads[0] ** 2) + tf.reduce_sum(grads[1] ** 2)
    out[name] = [y] + grads + outer.gradient(second, [x, gamma])
  for a, b in zip(out["moments"], out["fused"]):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)


def test_gate_biases_start_in_the_brief_ranges():
  for seed in range(5):
    _, rule = _learner_and_rule(seed)
    assert 4.0 <= float(rule.b_forget[0]) <= 6.0
    assert -5.0 <= float(rule.b_input[0]) <= -4.0
    for w in (rule.lstm_kernel, rule.w_input, rule.w_forget):
      assert np.abs(w.numpy()).max() <= 0.01


def test_c0_is_a_fresh_learners_weights():
  learner, rule = _learner_and_rule()
  np.testing.assert_array_equal(rule.c0.numpy(), learner.initial_theta())


def test_saturated_gates_reproduce_sgd_exactly():
  learner, rule = _learner_and_rule()
  rule.w_forget.assign(tf.zeros_like(rule.w_forget))
  rule.w_input.assign(tf.zeros_like(rule.w_input))
  rule.b_forget.assign([40.0])  # sigmoid(40) == 1.0 in float32
  rule.b_input.assign([-2.0])
  x, y = _episode()
  theta = rule.initial_theta()
  _, state = rule.step(theta, tf.ones_like(theta), tf.constant(1.0),
                       rule.init_state(theta))
  np.testing.assert_array_equal(state.f.numpy(), 1.0)
  alpha = state.i  # sigmoid(b_I) per coordinate (SIMD lanes may differ by 1 ulp)
  np.testing.assert_allclose(alpha, 1 / (1 + math.exp(2.0)), rtol=1e-6)
  meta = inner_loop.adapt(learner, rule, x, y, num_steps=5, batch_size=6)
  # Hand-written SGD with that step size: bit-for-bit the same parameters.
  theta = learner.initial_theta()
  for _ in range(5):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = learner.loss(learner.apply_theta(theta, x), y)
    theta = theta - alpha * tape.gradient(loss, theta)
  np.testing.assert_array_equal(meta.theta.numpy(), theta.numpy())
  # The SGD baseline with the scalar step size agrees to float rounding.
  sgd = SGD(learner.initial_theta(), step_size=1 / (1 + math.exp(2.0)))
  plain = inner_loop.adapt(learner, sgd, x, y, num_steps=5, batch_size=6)
  np.testing.assert_allclose(meta.theta.numpy(), plain.theta.numpy(),
                             rtol=1e-5, atol=1e-7)
  assert meta.support_losses[-1] < meta.support_losses[0]


def _meta_grads(learner, rule, second_order):
  x, y = _episode()
  qx, qy = _episode(seed=1)
  with tf.GradientTape() as tape:
    res = inner_loop.adapt(learner, rule, x, y, 4, 6, second_order)
    loss = learner.loss(learner.apply_theta(res.theta, qx), qy)
  return tape.gradient(loss, rule.trainable_variables)


def test_every_meta_parameter_gets_a_nonzero_meta_gradient():
  learner, rule = _learner_and_rule()
  grads = _meta_grads(learner, rule, second_order=False)
  names = [v.path for v in rule.trainable_variables]
  assert len(names) == 7  # c0, LSTM kernel and bias, W_I, W_F, b_I, b_F
  for name, g in zip(names, grads):
    assert g is not None, name
    assert float(tf.reduce_max(tf.abs(g))) > 0, name


def test_first_order_ignores_the_learner_gradient_path():
  learner, rule = _learner_and_rule()
  first = _meta_grads(learner, rule, second_order=False)
  second = _meta_grads(learner, rule, second_order=True)
  # Second order differs ...
  assert any(float(tf.reduce_max(tf.abs(a - b))) > 1e-7
             for a, b in zip(first, second))
  # ... and first order equals a replay in which the learner's losses and
  # gradients are constants computed outside the tape.
  x, y = _episode()
  qx, qy = _episode(seed=1)
  theta = rule.initial_theta()
  state = rule.init_state(theta)
  consts = []
  for _ in range(4):
    with tf.GradientTape() as t:
      t.watch(theta)
      loss = learner.loss(learner.apply_theta(theta, x), y)
    g = t.gradient(loss, theta)
    consts.append((tf.constant(g.numpy()), tf.constant(loss.numpy())))
    theta, state = rule.step(theta, g, loss, state)
  with tf.GradientTape() as tape:
    theta = rule.initial_theta()
    state = rule.init_state(theta)
    for g, loss in consts:
      theta, state = rule.step(theta, g, loss, state)
    qloss = learner.loss(learner.apply_theta(theta, qx), qy)
  replay = tape.gradient(qloss, rule.trainable_variables)
  for a, b in zip(first, replay):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-7)


def test_raw_inputs_variant_has_two_inputs():
  learner, rule = _learner_and_rule(preprocess=False)
  assert rule.lstm_kernel.shape == (2 + 5, 20)
  grads = _meta_grads(learner, rule, second_order=True)
  assert all(g is not None for g in grads)


@pytest.mark.parametrize("fused", [False, True])
def test_input_gate_scale_multiplies_the_learned_step(fused):
  """--input_gate_scale=s: theta_t = f theta - s i grad, with the gates (and
  so the whole layer-1 state) of the paper's cell."""
  learner = Conv4Learner(3, (16, 16, 1), filters=4, seed=0)
  theta = learner.initial_theta()
  grad = tf.constant(np.random.default_rng(0).normal(size=theta.shape),
                     tf.float32)
  outs = {}
  for scale in (1.0, 4.0):
    rule = MetaLSTM(theta, hidden_size=5, seed=0, fused=fused,
                    input_gate_scale=scale)
    rule.b_input.assign([0.5])  # a large step, so the scale shows
    outs[scale] = rule.step(theta, grad, tf.constant(0.7),
                            rule.init_state(theta))
  (theta_1, state_1), (theta_4, state_4) = outs[1.0], outs[4.0]
  np.testing.assert_array_equal(state_4.i.numpy(), state_1.i.numpy())
  np.testing.assert_array_equal(state_4.f.numpy(), state_1.f.numpy())
  np.testing.assert_allclose(
      theta_4.numpy(), (state_1.f * theta - 4.0 * state_1.i * grad).numpy(),
      rtol=1e-5, atol=1e-6)
  assert not np.allclose(theta_4.numpy(), theta_1.numpy())
  with pytest.raises(ValueError, match="input_gate_scale must be positive"):
    MetaLSTM(theta, input_gate_scale=0.0)


@pytest.mark.parametrize("fused", [False, True])
def test_per_parameter_lr_scales_each_coordinates_step(fused):
  """--per_parameter_lr: theta_t = f theta - s alpha i grad with a learned
  alpha per parameter; the gates do not change, and the meta-gradient
  reaches log_alpha (through the fused kernel's gradient as well)."""
  learner = Conv4Learner(3, (16, 16, 1), filters=4, seed=0)
  theta = learner.initial_theta()
  rng = np.random.default_rng(2)
  grad = tf.constant(rng.normal(size=theta.shape), tf.float32)
  loss = tf.constant(0.7)
  paper = MetaLSTM(theta, hidden_size=5, seed=0, fused=fused,
                   input_gate_scale=2.0)
  rule = MetaLSTM(theta, hidden_size=5, seed=0, fused=fused,
                  input_gate_scale=2.0, per_parameter_lr=True)
  assert rule.per_parameter_lr and not paper.per_parameter_lr
  assert len(rule.trainable_weights) == len(paper.trainable_weights) + 1
  np.testing.assert_array_equal(rule.log_alpha.numpy(), 0.0)
  alpha = np.exp(rng.normal(size=theta.shape)).astype(np.float32)
  rule.log_alpha.assign(np.log(alpha))
  want, want_state = paper.step(theta, grad, loss, paper.init_state(theta))
  with tf.GradientTape() as tape:
    got, got_state = rule.step(theta, grad, loss, rule.init_state(theta))
    objective = tf.reduce_sum(got * tf.range(theta.shape[0], dtype=tf.float32))
  np.testing.assert_array_equal(got_state.i.numpy(), want_state.i.numpy())
  np.testing.assert_allclose(
      got.numpy(), (want_state.f * theta -
                    2.0 * alpha * want_state.i * grad).numpy(),
      rtol=1e-5, atol=1e-6)
  # d objective / d log_alpha_k = -k * 2 alpha_k i_k grad_k.
  d_log_alpha = tape.gradient(objective, rule.log_alpha)
  np.testing.assert_allclose(
      d_log_alpha.numpy(),
      -np.arange(theta.shape[0]) * 2.0 * alpha * (want_state.i * grad).numpy(),
      rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_forget_toward_init_runs_the_cell_on_the_displacement(fused):
  """--forget_toward_init: theta_t = theta_0 + f (theta_{t-1} - theta_0) -
  i grad, with the gates computed from the displacement: the paper's cell on
  theta - theta_0, shifted back by theta_0."""
  learner = Conv4Learner(3, (16, 16, 1), filters=4, seed=0)
  theta0 = learner.initial_theta()
  rng = np.random.default_rng(1)
  grad = tf.constant(rng.normal(size=theta0.shape), tf.float32)
  delta = tf.constant(0.1 * rng.normal(size=theta0.shape), tf.float32)
  paper = MetaLSTM(theta0, hidden_size=5, seed=0, fused=fused,
                   input_gate_scale=2.0)
  anchored = MetaLSTM(theta0, hidden_size=5, seed=0, fused=fused,
                      forget_toward_init=True, input_gate_scale=2.0)
  for rule in (paper, anchored):  # a strong pull, so the anchor shows
    rule.b_forget.assign([-1.0])
  loss = tf.constant(0.7)
  want, want_state = paper.step(delta, grad, loss, paper.init_state(theta0))
  got, got_state = anchored.step(theta0 + delta, grad, loss,
                                 anchored.init_state(theta0))
  np.testing.assert_allclose(got.numpy(), (theta0 + want).numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_state.f.numpy(), want_state.f.numpy(),
                             rtol=1e-6)
  # From theta_0 itself nothing decays: only the learned step moves it,
  # where the paper's cell shrinks theta_0 by f (about 0.27 here).
  got, state = anchored.step(theta0, grad, loss, anchored.init_state(theta0))
  np.testing.assert_allclose(got.numpy(),
                             (theta0 - 2.0 * state.i * grad).numpy(),
                             rtol=1e-5, atol=1e-6)
  shrunk, _ = paper.step(theta0, tf.zeros_like(grad), loss,
                         paper.init_state(theta0))
  assert np.abs(shrunk.numpy()).sum() < 0.5 * np.abs(theta0.numpy()).sum()
