"""Layer 1 shared by the gated meta-learners: a coordinate-wise LSTM.

Every learner coordinate is one row: the LSTM (input 4 = preprocessed loss
and gradient, or 2 raw; hidden `hidden_size`) reads that coordinate's loss
and gradient, with weights shared by all rows (Ravi & Larochelle 2017). The
meta cells on top of it (the paper's, the GRU-like and the Complete-LSTM
cells of Furrer et al., Meta-Learner LSTM for Few Shot Learning) differ only
in how they turn its hidden state into the parameter update.
"""

import keras
import tensorflow as tf

from metalstm_tf.preprocess import DEFAULT_P, log_and_sign
from metalstm_tf.update_rules.base import UpdateRule


class CoordinateLSTMRule(UpdateRule):
  """Base of the rules whose first layer is the coordinate-wise LSTM.

  Args:
    initial_theta: `[P]` initial learner parameters (c_0's initial value).
    hidden_size: layer-1 hidden units (20 in the paper).
    preprocess: feed log/sign preprocessed inputs (True, the paper) or the
      raw loss and gradient.
    seed: seed of the initial meta-weights; subclasses draw their own
      weights' seeds from `self.initializer`, after layer 1's.
  """

  def __init__(self, initial_theta, hidden_size: int = 20,
               preprocess: bool = True, seed: int | None = None, **kwargs):
    super().__init__(initial_theta, **kwargs)
    self.hidden_size, self.preprocess = hidden_size, preprocess
    self._seed = seed
    self._seeds = iter(range(0 if seed is None else seed, 10 ** 9))
    in_size = 4 if preprocess else 2
    self.lstm_kernel = self.add_weight(
        shape=(in_size + hidden_size, 4 * hidden_size),
        initializer=self.initializer(-0.01, 0.01), name="lstm_kernel")
    self.lstm_bias = self.add_weight(shape=(4 * hidden_size,),
                                     initializer=self.initializer(-0.01, 0.01),
                                     name="lstm_bias")

  def initializer(self, lo: float, hi: float):
    """U(lo, hi), seeded by the next seed of this rule's sequence."""
    return keras.initializers.RandomUniform(
        lo, hi, seed=None if self._seed is None else next(self._seeds))

  def _inputs(self, grad, loss, module=None):
    """Loss features `[L]` (shared by all coordinates) and per-coordinate
    gradient features `[G, P]`: preprocessed L = G = 2; raw L = G = 1.
    With the kernels' op `module`, the preprocessing is its one-op
    `log_and_sign`."""
    if self.preprocess:
      if module is not None:
        return (module.log_and_sign(loss, p=DEFAULT_P),
                module.log_and_sign(grad, p=DEFAULT_P))
      return log_and_sign(loss), log_and_sign(grad, axis=0)
    return loss[None], grad[None, :]

  def zero_hidden(self, theta):
    """`[hidden, P]` zeros: layer 1's initial h and c."""
    return tf.zeros([self.hidden_size, tf.shape(theta)[0]], theta.dtype)

  def layer1(self, grad, loss, h, c):
    """One LSTM step over all coordinates (feature-major `[hidden, P]`)."""
    loss_in, grad_in = self._inputs(grad, loss)
    p = tf.shape(grad)[0]
    loss_in = tf.broadcast_to(loss_in[:, None], [loss_in.shape[0], p])
    x = tf.concat([loss_in, grad_in, h], axis=0)
    z = (tf.matmul(self.lstm_kernel, x, transpose_a=True) +
         self.lstm_bias[:, None])
    zi, zf, zg, zo = tf.split(z, 4, axis=0)
    c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
    h = tf.sigmoid(zo) * tf.tanh(c)
    return h, c

  def gate_weight(self, name: str):
    """A meta-cell gate's weights `[hidden + 2, 1]` over [h_t, theta_{t-1},
    recurrent input], U(-0.01, 0.01)."""
    return self.add_weight(shape=(self.hidden_size + 2, 1),
                           initializer=self.initializer(-0.01, 0.01),
                           name=f"w_{name}")

  def gate_bias(self, name: str, lo: float, hi: float):
    """A meta-cell gate's scalar bias, U(lo, hi)."""
    return self.add_weight(shape=(1,), initializer=self.initializer(lo, hi),
                           name=f"b_{name}")

  def gate(self, w, b, h, theta, recurrent):
    """sigma(W [h, theta, recurrent] + b) per coordinate, `[P]`."""
    n = self.hidden_size
    w = tf.convert_to_tensor(w)[:, 0]
    z = tf.linalg.matvec(h, w[:n], transpose_a=True)
    return tf.sigmoid(z + w[n] * theta + w[n + 1] * recurrent + b)
