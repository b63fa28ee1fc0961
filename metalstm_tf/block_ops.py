"""A Conv-4 block after its convolution, in TensorFlow ops: bias, batch
norm with the batch's statistics (or a reference subset's), ReLU, 2x2
max-pool. The learner runs it where the fused kernel does not apply, and the
kernel's second derivative differentiates it (`metalstm_tf/kernels`).
"""

import tensorflow as tf

BN_EPSILON = 1e-5


def batch_norm(x, gamma, beta):
  """Batch norm of NHWC `x` with the batch's own mean and (biased) variance.

  One fused op forward and one backward instead of the moments and about ten
  element-wise ops (faster: RESULTS.md); equal to
  `tf.nn.batch_normalization(x, *tf.nn.moments(x, [0, 1, 2]), beta, gamma,
  BN_EPSILON)` up to rounding (tested), and twice differentiable.
  """
  y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta,
                                             epsilon=BN_EPSILON,
                                             is_training=True)
  return y


def batch_norm_from(x, num_reference, gamma, beta):
  """Batch norm of NHWC `x` with the (biased) moments of its first
  `num_reference` rows, the reference examples."""
  mean, var = tf.nn.moments(x[:num_reference], axes=[0, 1, 2])
  return tf.nn.batch_normalization(x, mean, var, beta, gamma, BN_EPSILON)


def block_tail(x, bias, gamma, beta, num_reference=None):
  """A block after its convolution `x` (NHWC): bias, batch norm (with the
  batch's statistics, or those of its first `num_reference` rows), ReLU,
  2x2 max-pool (TensorFlow ops)."""
  x = x + bias
  x = (batch_norm(x, gamma, beta) if num_reference is None else
       batch_norm_from(x, num_reference, gamma, beta))
  return tf.nn.max_pool2d(tf.nn.relu(x), ksize=2, strides=2, padding="VALID")
