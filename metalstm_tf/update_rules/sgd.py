"""Plain SGD from a meta-learned initialisation (MAML's inner loop).

Behind the same interface as the learned rules; `learn_step_size` makes the
step size a meta-parameter too (the "Adaptive SGD" of Furrer et al., Meta-Learner
LSTM for Few Shot Learning).
"""

import tensorflow as tf

from metalstm_tf.update_rules.base import UpdateRule


class SGD(UpdateRule):
  """theta_t = theta_{t-1} - alpha * grad_t.

  Args:
    initial_theta: `[P]` initial learner parameters.
    step_size: alpha.
    learn_step_size: make alpha a meta-parameter.
  """

  def __init__(self, initial_theta, step_size: float = 0.01,
               learn_step_size: bool = False, **kwargs):
    super().__init__(initial_theta, **kwargs)
    self.step_size = self.add_weight(shape=(), initializer="zeros",
                                     name="step_size",
                                     trainable=learn_step_size)
    self.step_size.assign(step_size)

  def init_state(self, theta):
    return ()

  def step(self, theta, grad, loss, state):
    return theta - self.step_size * grad, state

  def summaries(self, layout):
    return {"step_size": tf.convert_to_tensor(self.step_size)}
