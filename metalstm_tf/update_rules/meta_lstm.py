"""The two-layer coordinate-wise meta-learner LSTM (Ravi & Larochelle 2017).

Layer 1 is a standard LSTM (input 4, hidden `hidden_size`) over the
preprocessed loss and gradient of every coordinate. Layer 2 is the meta cell
whose cell state is the learner's parameters (BRIEF §1, paper Eq. 2):

    i_t = sigma(W_I [h_t, theta_{t-1}, i_{t-1}] + b_I)
    f_t = sigma(W_F [h_t, theta_{t-1}, f_{t-1}] + b_F)
    theta_t = f_t * theta_{t-1} - i_t * grad_t

All rows (coordinates) share the weights. Initialisation: weights
U(-0.01, 0.01), b_F ~ U(4, 6), b_I ~ U(-5, -4), c_0 = a fresh learner.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from metalstm_tf.preprocess import log_and_sign
from metalstm_tf.update_rules.base import UpdateRule


class MetaLSTMState(NamedTuple):
  """Per-coordinate state; every field has leading dimension P."""
  h: tf.Tensor  # [P, hidden] layer-1 hidden state.
  c: tf.Tensor  # [P, hidden] layer-1 cell state.
  f: tf.Tensor  # [P] previous forget gate.
  i: tf.Tensor  # [P] previous input gate.


class MetaLSTM(UpdateRule):
  """The meta-learner LSTM update rule.

  Args:
    initial_theta: `[P]` initial learner parameters (c_0's initial value).
    hidden_size: layer-1 hidden units (20 in the paper).
    preprocess: feed log/sign preprocessed inputs (True, the paper) or the raw
      loss and gradient (004_1039c1b988ad2642's variant).
    seed: seed of the initial meta-weights.
  """

  def __init__(self, initial_theta, hidden_size: int = 20,
               preprocess: bool = True, seed: int | None = None, **kwargs):
    super().__init__(initial_theta, **kwargs)
    self.hidden_size, self.preprocess = hidden_size, preprocess
    in_size = 4 if preprocess else 2
    seeds = iter(range(0 if seed is None else seed, 10 ** 9))

    def uniform(lo, hi):
      return keras.initializers.RandomUniform(
          lo, hi, seed=None if seed is None else next(seeds))

    w = uniform(-0.01, 0.01)
    self.lstm_kernel = self.add_weight(
        shape=(in_size + hidden_size, 4 * hidden_size), initializer=w,
        name="lstm_kernel")
    self.lstm_bias = self.add_weight(shape=(4 * hidden_size,),
                                     initializer=uniform(-0.01, 0.01),
                                     name="lstm_bias")
    self.w_input = self.add_weight(shape=(hidden_size + 2, 1),
                                   initializer=uniform(-0.01, 0.01),
                                   name="w_input")
    self.w_forget = self.add_weight(shape=(hidden_size + 2, 1),
                                    initializer=uniform(-0.01, 0.01),
                                    name="w_forget")
    self.b_input = self.add_weight(shape=(1,), initializer=uniform(-5.0, -4.0),
                                   name="b_input")
    self.b_forget = self.add_weight(shape=(1,), initializer=uniform(4.0, 6.0),
                                    name="b_forget")
    self.built = True

  def init_state(self, theta):
    p = tf.shape(theta)[0]
    zeros_h = tf.zeros([p, self.hidden_size], theta.dtype)
    zeros = tf.zeros_like(theta)
    return MetaLSTMState(h=zeros_h, c=zeros_h, f=zeros, i=zeros)

  def _inputs(self, grad, loss):
    """`[P, 4]`: preprocessed loss (2) and gradient (2); raw: `[P, 2]`."""
    if self.preprocess:
      loss_in = tf.broadcast_to(log_and_sign(loss), [tf.shape(grad)[0], 2])
      return tf.concat([loss_in, log_and_sign(grad)], axis=1)
    return tf.stack([tf.broadcast_to(loss, tf.shape(grad)), grad], axis=1)

  def step(self, theta, grad, loss, state: MetaLSTMState):
    x = self._inputs(grad, loss)
    z = tf.matmul(tf.concat([x, state.h], axis=1), self.lstm_kernel)
    z = z + self.lstm_bias
    zi, zf, zg, zo = tf.split(z, 4, axis=1)
    c = tf.sigmoid(zf) * state.c + tf.sigmoid(zi) * tf.tanh(zg)
    h = tf.sigmoid(zo) * tf.tanh(c)
    theta_col = theta[:, None]
    f = tf.sigmoid(
        tf.matmul(tf.concat([h, theta_col, state.f[:, None]], axis=1),
                  self.w_forget) + self.b_forget)[:, 0]
    i = tf.sigmoid(
        tf.matmul(tf.concat([h, theta_col, state.i[:, None]], axis=1),
                  self.w_input) + self.b_input)[:, 0]
    new_theta = f * theta - i * grad
    return new_theta, MetaLSTMState(h=h, c=c, f=f, i=i)

  @staticmethod
  def gates(state: MetaLSTMState):
    return {"input_gate": state.i, "forget_gate": state.f}
