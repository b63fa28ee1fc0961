"""TURTLE (Huisman et al., Stateless Neural Meta-Learning using
Second-Order Gradients): a stateless coordinate-wise update network,

    theta_{t+1} = theta_t + alpha * g_phi(x_t),

g_phi an MLP (5 hidden layers of 20 ReLU units by default, linear output)
applied to every coordinate's inputs x_t: its raw gradient and optionally the
raw loss and the step index t; alpha `[P]` a learned per-parameter step
size, started U(0, 1) as in the authors' code. The MLP's layers start Glorot
uniform with zero biases.
"""

import keras
import tensorflow as tf

from metalstm_tf.update_rules.base import UpdateRule, per_layer

INPUTS = ("grad", "loss", "time")


class Turtle(UpdateRule):
  """Args: initial_theta; hidden_layers, hidden_units of g_phi; inputs: a
  subset of INPUTS, 'grad' first; seed."""

  def __init__(self, initial_theta, hidden_layers: int = 5,
               hidden_units: int = 20, inputs=("grad",),
               seed: int | None = None, **kwargs):
    super().__init__(initial_theta, **kwargs)
    inputs = tuple(inputs)
    if not inputs or inputs[0] != "grad" or set(inputs) - set(INPUTS) or len(
        set(inputs)) != len(inputs):
      raise ValueError(f"TURTLE inputs must start with 'grad' and be taken "
                       f"from {INPUTS} without repeats, got {inputs!r}.")
    if hidden_layers < 1 or hidden_units < 1:
      raise ValueError("TURTLE needs at least one hidden layer of at least "
                       f"one unit, got {hidden_layers} x {hidden_units}.")
    self.inputs, self.hidden_layers, self.hidden_units = (inputs,
                                                          hidden_layers,
                                                          hidden_units)
    sizes = [len(inputs)] + [hidden_units] * hidden_layers + [1]
    self.kernels, self.biases = [], []
    for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
      self.kernels.append(self.add_weight(
          shape=(a, b), name=f"g_kernel{j}",
          initializer=keras.initializers.GlorotUniform(
              seed=None if seed is None else seed + j)))
      self.biases.append(self.add_weight(shape=(b,), initializer="zeros",
                                         name=f"g_bias{j}"))
    self.alpha = self.add_weight(
        shape=(self.num_params,), name="alpha",
        initializer=keras.initializers.RandomUniform(
            0.0, 1.0, seed=None if seed is None else seed + len(sizes)))
    self.built = True

  def init_state(self, theta):
    return tf.zeros([], tf.float32)  # the step index t

  def update_network(self, features):
    """g_phi on `[P, inputs]` features; returns `[P]`."""
    x = features
    for j, (w, b) in enumerate(zip(self.kernels, self.biases)):
      x = tf.matmul(x, w) + b
      if j < len(self.kernels) - 1:
        x = tf.nn.relu(x)
    return x[:, 0]

  def step(self, theta, grad, loss, state):
    columns = [grad]
    p = tf.shape(grad)
    if "loss" in self.inputs:
      columns.append(tf.broadcast_to(loss, p))
    if "time" in self.inputs:
      columns.append(tf.broadcast_to(state, p))
    update = self.update_network(tf.stack(columns, axis=1))
    return theta + self.alpha * update, state + 1.0

  def summaries(self, layout):
    return per_layer("alpha", tf.convert_to_tensor(self.alpha), layout)
