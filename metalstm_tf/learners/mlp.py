"""A ReLU MLP learner for regression (the 1-40-40-1 sine-wave learner)."""

import keras
import tensorflow as tf

from metalstm_tf.learners.base import Learner


class MLPLearner(Learner):
  """Fully connected ReLU network with a linear output and MSE loss.

  Args:
    sizes: layer widths including input and output, e.g. (1, 40, 40, 1).
    seed: seed of the initial weights.
  """

  def __init__(self, sizes=(1, 40, 40, 1), seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.sizes = tuple(sizes)
    self.example_shape = (sizes[0],)
    for j, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      init = keras.initializers.GlorotUniform(
          seed=None if seed is None else seed + j)
      self.add_weight(shape=(fan_in, fan_out), initializer=init,
                      name=f"dense{j}_kernel")
      self.add_weight(shape=(fan_out,), initializer="zeros",
                      name=f"dense{j}_bias")
    self.built = True

  def forward(self, params, x, reference=None):
    """Outputs `[B, sizes[-1]]` of inputs `x` `[B, sizes[0]]` (each row on
    its own: `reference` is not needed)."""
    x = self.features(params[:-2], x, reference)
    return tf.matmul(x, params[-2]) + params[-1]

  def features(self, params, x, reference=None):
    """The last hidden layer's ReLU activations `[B, sizes[-2]]`."""
    del reference
    for j in range(len(params) // 2):
      x = tf.nn.relu(tf.matmul(x, params[2 * j]) + params[2 * j + 1])
    return x

  def loss(self, outputs, y):
    return tf.reduce_mean(tf.square(outputs - y))

  def metric(self, outputs, y):
    return self.loss(outputs, y)
