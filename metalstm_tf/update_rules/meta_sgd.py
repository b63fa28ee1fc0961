"""Meta-SGD (Li et al. 2017, Meta-SGD: Learning to Learn Quickly for
Few-Shot Learning): SGD from a learned initialisation with a learned step
size per learner parameter,

    theta_t = theta_{t-1} - alpha * grad_t,

alpha `[P]` a meta-parameter (any sign), initialised U(lo, hi) as in the
paper ([0.005, 0.1]) or to a constant.
"""

import keras
import tensorflow as tf

from metalstm_tf.update_rules.base import UpdateRule, per_layer


class MetaSGD(UpdateRule):
  """Args: initial_theta; alpha_range (lo, hi) of alpha's uniform start
  (lo == hi: a constant); seed."""

  def __init__(self, initial_theta, alpha_range=(0.005, 0.1),
               seed: int | None = None, **kwargs):
    super().__init__(initial_theta, **kwargs)
    lo, hi = alpha_range
    init = (keras.initializers.Constant(lo) if lo == hi else
            keras.initializers.RandomUniform(lo, hi, seed=seed))
    self.alpha = self.add_weight(shape=(self.num_params,), initializer=init,
                                 name="alpha")
    self.built = True

  def init_state(self, theta):
    return ()

  def step(self, theta, grad, loss, state):
    return theta - self.alpha * grad, state

  def summaries(self, layout):
    return per_layer("alpha", tf.convert_to_tensor(self.alpha), layout)
