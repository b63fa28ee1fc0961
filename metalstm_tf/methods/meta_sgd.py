"""`meta_sgd`: Li et al. 2017, Meta-SGD: Learning to Learn Quickly for
Few-Shot Learning: a learned initialisation and a learned step size per
learner parameter; one inner step, second order."""

import dataclasses

from metalstm_tf.methods.registry import MethodSpec, option, register


@dataclasses.dataclass(frozen=True)
class MetaSGDOptions:
  alpha_low: float = option(0.005, "Meta-SGD: lower end of the per-parameter "
                            "step sizes' uniform initialisation.")
  alpha_high: float = option(0.1, "Meta-SGD: upper end of the per-parameter "
                             "step sizes' uniform initialisation (equal to "
                             "--alpha_low: a constant start).")
  second_order: bool = option(True, "Back-propagate through the learner's "
                              "gradients.")

  def __post_init__(self):
    if not 0 <= self.alpha_low <= self.alpha_high:
      raise ValueError("Need 0 <= --alpha_low <= --alpha_high, got "
                       f"{self.alpha_low!r} and {self.alpha_high!r}.")


def build(options: MetaSGDOptions, learner, config):
  from metalstm_tf.methods.gradient import GradientMethod
  from metalstm_tf.update_rules.meta_sgd import MetaSGD
  rule = MetaSGD(learner.initial_theta(),
                 alpha_range=(options.alpha_low, options.alpha_high),
                 seed=config.seed)
  return GradientMethod(learner, rule, config.inner_steps,
                        config.inner_batch_size, options.second_order)


SPEC = register(MethodSpec(
    name="meta_sgd", options=MetaSGDOptions, build=build,
    summary="learned initialisation and per-parameter step sizes "
            "(Li et al. 2017)",
    config_defaults=lambda dataset, shots: {"inner_steps": 1}))
