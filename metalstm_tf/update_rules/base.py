"""The update-rule interface shared by learned optimizers and baselines.

An update rule owns the meta-learned initialisation of the learner (`c_0`) and
turns (parameters, gradient, loss, state) into new parameters and state:

    theta_0 = rule.initial_theta()
    state = rule.init_state(theta_0)
    theta, state = rule.step(theta, grad, loss, state)

`theta` and `grad` are flat `[P]` vectors, `loss` a scalar, `state` a tf.nest
structure of tensors. Nothing is mutated during an episode.
"""

import keras
import tensorflow as tf

from metalstm_tf.kernels import FusedKernelUser


class UpdateRule(FusedKernelUser, keras.layers.Layer):
  """Base class; the layer's trainable weights are the meta-parameters.

  `fused` / `standard_ops()`: whether the rule may use the project's custom
  (fused) kernels (`FusedKernelUser`); rules without any ignore it.
  """

  has_gates = False  # `gates(state)` returns per-coordinate values

  def __init__(self, initial_theta: tf.Tensor, **kwargs):
    super().__init__(**kwargs)
    initial_theta = tf.convert_to_tensor(initial_theta, tf.float32)
    self.num_params = int(initial_theta.shape[0])
    self.c0 = self.add_weight(shape=(self.num_params,), initializer="zeros",
                              name="c0")
    self.c0.assign(initial_theta)

  def initial_theta(self) -> tf.Tensor:
    """theta_0 = c_0, the meta-learned learner initialisation, `[P]`."""
    return tf.convert_to_tensor(self.c0)

  def init_state(self, theta: tf.Tensor):
    raise NotImplementedError

  def step(self, theta: tf.Tensor, grad: tf.Tensor, loss: tf.Tensor, state):
    """One update; returns `(new_theta, new_state)`."""
    raise NotImplementedError

  @staticmethod
  def gates(state) -> dict[str, tf.Tensor]:
    """Per-coordinate gate values `[P]` to log (empty if the rule has none)."""
    return {}

  def summaries(self, layout) -> dict[str, tf.Tensor]:
    """The rule's own TensorBoard values (name -> rank-0 scalar or a
    histogram), e.g. learned step sizes; `layout` names the learner's
    layers."""
    return {}


def per_layer(name: str, values: tf.Tensor, layout) -> dict[str, tf.Tensor]:
  """`name/<layer>` histograms and `name/<layer>/mean` scalars of a `[P]`
  per-parameter vector."""
  out = {}
  for layer, (start, stop) in layout.offsets().items():
    out[f"{name}/{layer}"] = values[start:stop]
    out[f"{name}/{layer}/mean"] = tf.reduce_mean(values[start:stop])
  return out
