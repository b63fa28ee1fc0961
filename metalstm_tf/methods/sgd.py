"""SGD inner loops from a learned initialisation:

* `maml` / `fomaml`: Finn et al. 2017, Model-Agnostic Meta-Learning for Fast
  Adaptation of Deep Networks: a fixed step size `--inner_lr`, second and
  first order;
* `adaptive_sgd`: Furrer et al., Meta-Learner LSTM for Few Shot Learning:
  the step size is learned too (no recurrence).
"""

import dataclasses

from metalstm_tf.methods.registry import MethodSpec, option, register


def inner_lr_default(dataset: str, shots: int) -> dict:
  """Finn et al.'s step sizes: 0.4 on Omniglot, 0.01 otherwise."""
  return {"inner_lr": 0.4 if dataset == "omniglot" else 0.01}


def maml_config_defaults(dataset: str, shots: int) -> dict:
  """Finn et al.'s protocols: Omniglot 1 step, 32 tasks per meta-update,
  64 filters; mini-ImageNet 5 steps, 4 (1-shot) / 2 (5-shot) tasks, 32
  filters; sine 1 step, 25 tasks."""
  if dataset == "omniglot":
    return {"inner_steps": 1, "meta_batch_size": 32, "filters": 64}
  if dataset == "mini_imagenet":
    return {"inner_steps": 5, "meta_batch_size": 4 if shots == 1 else 2}
  return {"inner_steps": 1, "meta_batch_size": 25}


@dataclasses.dataclass(frozen=True)
class MAMLOptions:
  inner_lr: float = option(0.01, "Inner-loop SGD step size (default: 0.4 on "
                           "Omniglot, 0.01 otherwise); for adaptive_sgd its "
                           "initial value.")

  def __post_init__(self):
    if not self.inner_lr > 0:  # also refuses NaN
      raise ValueError(f"--inner_lr must be positive, got {self.inner_lr!r}.")


@dataclasses.dataclass(frozen=True)
class AdaptiveSGDOptions(MAMLOptions):
  second_order: bool = option(False, "Back-propagate through the learner's "
                              "gradients.")


def _maml_builder(second_order: bool):
  def build(options: MAMLOptions, learner, config):
    from metalstm_tf.methods.gradient import GradientMethod
    from metalstm_tf.update_rules.sgd import SGD
    rule = SGD(learner.initial_theta(), step_size=options.inner_lr)
    return GradientMethod(learner, rule, config.inner_steps,
                          config.inner_batch_size, second_order)
  return build


def build_adaptive_sgd(options: AdaptiveSGDOptions, learner, config):
  from metalstm_tf.methods.gradient import GradientMethod
  from metalstm_tf.update_rules.sgd import SGD
  rule = SGD(learner.initial_theta(), step_size=options.inner_lr,
             learn_step_size=True)
  return GradientMethod(learner, rule, config.inner_steps,
                        config.inner_batch_size, options.second_order)


MAML = register(MethodSpec(
    name="maml", options=MAMLOptions, build=_maml_builder(True),
    summary="MAML: learned initialisation, SGD inner loop, second order "
            "(Finn et al. 2017)",
    option_defaults=inner_lr_default, config_defaults=maml_config_defaults))
FOMAML = register(MethodSpec(
    name="fomaml", options=MAMLOptions, build=_maml_builder(False),
    summary="first-order MAML (Finn et al. 2017)",
    option_defaults=inner_lr_default, config_defaults=maml_config_defaults))
ADAPTIVE_SGD = register(MethodSpec(
    name="adaptive_sgd", options=AdaptiveSGDOptions, build=build_adaptive_sgd,
    summary="learned initialisation and one learned SGD step size "
            "(Furrer et al.)",
    option_defaults=inner_lr_default))
