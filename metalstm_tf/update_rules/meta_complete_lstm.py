"""The Complete-LSTM meta cell of Furrer et al. (Meta-Learner LSTM for Few
Shot Learning): the paper's cell plus an output gate that produces a
layer-2 hidden state, which the gates read in place of their previous values.

    f_t = sigma(W_F [h_t, theta_{t-1}, o2_{t-1}] + b_F)
    i_t = sigma(W_I [h_t, theta_{t-1}, o2_{t-1}] + b_I)
    o_t = sigma(W_O [h_t, theta_{t-1}, o2_{t-1}] + b_O)
    theta_t = f_t * theta_{t-1} - i_t * grad_t
    o2_t = o_t * tanh(theta_t)

b_F ~ U(4, 6), b_I ~ U(-5, -4) as in the paper's cell, b_O = 0.
"""

from typing import NamedTuple

import tensorflow as tf

from metalstm_tf.update_rules.coordinate import CoordinateLSTMRule


class MetaCompleteLSTMState(NamedTuple):
  h: tf.Tensor   # [hidden, P] layer-1 hidden state.
  c: tf.Tensor   # [hidden, P] layer-1 cell state.
  h2: tf.Tensor  # [P] layer-2 hidden state o_t * tanh(theta_t).
  f: tf.Tensor   # [P] last forget gate (logged).
  i: tf.Tensor   # [P] last input gate (logged).
  o: tf.Tensor   # [P] last output gate (logged).


class MetaCompleteLSTM(CoordinateLSTMRule):
  """The Complete-LSTM meta-learner (arguments as `CoordinateLSTMRule`)."""

  def __init__(self, initial_theta, **kwargs):
    super().__init__(initial_theta, **kwargs)
    self.w_input = self.gate_weight("input")
    self.w_forget = self.gate_weight("forget")
    self.w_output = self.gate_weight("output")
    self.b_input = self.gate_bias("input", -5.0, -4.0)
    self.b_forget = self.gate_bias("forget", 4.0, 6.0)
    self.b_output = self.gate_bias("output", 0.0, 0.0)
    self.built = True

  def init_state(self, theta):
    zeros_h, zeros = self.zero_hidden(theta), tf.zeros_like(theta)
    return MetaCompleteLSTMState(h=zeros_h, c=zeros_h, h2=zeros, f=zeros,
                                 i=zeros, o=zeros)

  def step(self, theta, grad, loss, state: MetaCompleteLSTMState):
    h, c = self.layer1(grad, loss, state.h, state.c)
    f = self.gate(self.w_forget, self.b_forget, h, theta, state.h2)
    i = self.gate(self.w_input, self.b_input, h, theta, state.h2)
    o = self.gate(self.w_output, self.b_output, h, theta, state.h2)
    new_theta = f * theta - i * grad
    return new_theta, MetaCompleteLSTMState(
        h=h, c=c, h2=o * tf.tanh(new_theta), f=f, i=i, o=o)

  has_gates = True

  @staticmethod
  def gates(state: MetaCompleteLSTMState):
    return {"input_gate": state.i, "forget_gate": state.f,
            "output_gate": state.o}
