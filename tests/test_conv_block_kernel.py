"""The fused Conv-4 block kernel (batch norm, ReLU, max-pool): the values and
gradients of TensorFlow's ops, to second order, inside the learner too, and
never in graphs built for SavedModels."""

import numpy as np
import pytest
import tensorflow as tf

from metalstm_tf import kernels
from metalstm_tf.learners import Conv4Learner
from metalstm_tf.block_ops import block_tail
from metalstm_tf.learners.conv4 import fused_block_tail


@pytest.fixture(scope="module")
def module():
  m = kernels.library()
  assert m is not None, "the fused kernels did not build (see the log)"
  return m


def _inputs(shape, seed=0):
  rng = np.random.default_rng(seed)
  c = shape[-1]
  x = rng.normal(size=shape).astype(np.float32) * 2 + 0.5
  vectors = [rng.normal(size=c).astype(np.float32) for _ in range(3)]
  dy = rng.normal(size=(shape[0], shape[1] // 2, shape[2] // 2, c))
  return [tf.constant(v) for v in (x, *vectors)], tf.constant(dy, tf.float32)


def _value_and_grads(fn, inputs, dy):
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    y = fn(*inputs)
  return [y] + tape.gradient(y, inputs, output_gradients=dy)


@pytest.mark.parametrize("shape", [(3, 5, 7, 8), (4, 21, 21, 32),
                                   (2, 10, 10, 16)])
def test_values_and_gradients_equal_tensorflow_ops(module, shape):
  """Odd sizes too (the row and column no window covers)."""
  inputs, dy = _inputs(shape)
  fused = _value_and_grads(fused_block_tail, inputs, dy)
  ops = _value_and_grads(block_tail, inputs, dy)
  for name, a, b in zip(["y", "dx", "dgamma", "dbeta"], fused[:2] + fused[3:],
                        ops[:2] + ops[3:]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
  # The bias cancels in batch norm: its gradient is exactly zero here, and
  # rounding noise with TensorFlow's ops.
  assert not np.any(fused[2])
  np.testing.assert_allclose(ops[2], 0, atol=1e-4)
  other_dy = _value_and_grads(fused_block_tail, inputs, dy * -0.5)
  assert not np.allclose(other_dy[1], fused[1])  # the comparison bites


def test_second_order_equals_tensorflow_ops(module):
  """The gradient of the gradient (what second-order meta-learning takes)."""
  inputs, dy = _inputs((3, 9, 8, 8), seed=1)

  def grad_of_grad(fn):
    with tf.GradientTape() as outer:
      outer.watch(inputs + [dy])
      with tf.GradientTape() as inner:
        inner.watch(inputs)
        y = fn(*inputs)
      grads = inner.gradient(y, inputs, output_gradients=dy)
      objective = (tf.reduce_sum(grads[0] ** 2) + tf.reduce_sum(grads[2]) +
                   tf.reduce_sum(grads[3] * grads[2]))
    return outer.gradient(objective, inputs + [dy])

  fused, ops = grad_of_grad(fused_block_tail), grad_of_grad(block_tail)
  for a, b in zip(fused, ops):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert np.abs(fused[0]).max() > 1e-3  # not vacuous


def test_learner_with_and_without_the_kernel(module):
  """Whole Conv-4 forward passes: logits and every parameter's gradient."""
  images = tf.random.stateless_uniform([10, 28, 28, 1], seed=[1, 2])
  labels = tf.constant([0, 1, 2, 3, 4] * 2)
  results = []
  for fused in (True, False):
    learner = Conv4Learner(5, (28, 28, 1), filters=16, seed=3, fused=fused)
    params = learner.layout.unflatten(learner.initial_theta())
    with tf.GradientTape() as tape:
      tape.watch(params)
      logits = learner.forward(params, images)
      loss = learner.loss(logits, labels)
    results.append([logits] + tape.gradient(loss, params))
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_channels_not_a_multiple_of_8(module):
  inputs, dy = _inputs((2, 6, 6, 4))
  assert fused_block_tail(*inputs) is None  # the learner uses ops instead
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="channels of x must be a multiple of 8"):
    module.batch_norm_relu_pool(*inputs)


def test_standard_ops_build_no_custom_op(module):
  learner = Conv4Learner(5, (28, 28, 1), filters=8, seed=0)
  params = learner.layout.unflatten(learner.initial_theta())

  def op_types():
    fn = tf.function(lambda x: learner.forward(params, x))
    graph = fn.get_concrete_function(
        tf.TensorSpec([None, 28, 28, 1])).graph
    return {op.type for op in graph.get_operations()}

  assert "BatchNormReluPool" in op_types()
  with learner.standard_ops():
    assert "BatchNormReluPool" not in op_types()
  assert learner.fused
