"""The GRU-like meta cell of Furrer et al. (Meta-Learner LSTM for Few Shot
Learning): one update gate in place of the input and forget gates.

    z_t = sigma(W_Z [h_t, theta_{t-1}, z_{t-1}] + b_Z)
    theta_t = z_t * theta_{t-1} - (1 - z_t) * grad_t

on top of the same layer-1 LSTM; b_Z ~ U(5, 6), so the cell starts with
almost no forgetting and a small step (1 - z near 0.005), like the paper's.
"""

from typing import NamedTuple

import tensorflow as tf

from metalstm_tf.update_rules.coordinate import CoordinateLSTMRule


class MetaGRUState(NamedTuple):
  h: tf.Tensor  # [hidden, P] layer-1 hidden state.
  c: tf.Tensor  # [hidden, P] layer-1 cell state.
  z: tf.Tensor  # [P] previous update gate.


class MetaGRU(CoordinateLSTMRule):
  """The GRU-like meta-learner (arguments as `CoordinateLSTMRule`)."""

  def __init__(self, initial_theta, **kwargs):
    super().__init__(initial_theta, **kwargs)
    self.w_update = self.gate_weight("update")
    self.b_update = self.gate_bias("update", 5.0, 6.0)
    self.built = True

  def init_state(self, theta):
    zeros_h = self.zero_hidden(theta)
    return MetaGRUState(h=zeros_h, c=zeros_h, z=tf.zeros_like(theta))

  def step(self, theta, grad, loss, state: MetaGRUState):
    h, c = self.layer1(grad, loss, state.h, state.c)
    z = self.gate(self.w_update, self.b_update, h, theta, state.z)
    return z * theta - (1.0 - z) * grad, MetaGRUState(h=h, c=c, z=z)

  has_gates = True

  @staticmethod
  def gates(state: MetaGRUState):
    return {"update_gate": state.z}
