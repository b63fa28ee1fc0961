"""`meta_lstm`: the meta-learner LSTM of Ravi & Larochelle (2017),
Optimization as a Model for Few-Shot Learning, with this project's options
of its cell. Second order on raw gradients (`--second_order
--nopreprocess`) is the enhanced meta-learner LSTM of Huisman et al.,
Stateless Neural Meta-Learning using Second-Order Gradients."""

import dataclasses

from metalstm_tf.methods.registry import MethodSpec, option, register


def coordinate_lstm_defaults(dataset: str, shots: int) -> dict:
  # Sine: second order on raw inputs measured best (RESULTS.md).
  if dataset == "sine":
    return {"second_order": True, "preprocess": False}
  return {}


@dataclasses.dataclass(frozen=True)
class CoordinateLSTMOptions:
  """Options of every meta cell on the coordinate-wise layer-1 LSTM."""
  hidden_size: int = option(20, "Hidden units of the meta-learner's "
                            "layer-1 LSTM.")
  preprocess: bool = option(True, "Log/sign-preprocess the loss and gradient "
                            "fed to the meta-learner (off: raw; default off "
                            "for sine).")
  second_order: bool = option(False, "Back-propagate through the learner's "
                              "gradients (default: off, the paper's first "
                              "order; on for sine and the methods of "
                              "Finn et al., Li et al. and Huisman et al.).")

  def __post_init__(self):
    if not self.hidden_size > 0:
      raise ValueError(f"--hidden_size must be positive, got "
                       f"{self.hidden_size!r}.")


@dataclasses.dataclass(frozen=True)
class MetaLSTMOptions(CoordinateLSTMOptions):
  input_gate_scale: float = option(1.0, "The meta cell subtracts "
                                   "input_gate_scale * i_t * grad: the learned "
                                   "learning rate ranges over (0, "
                                   "input_gate_scale). 1 is the paper's cell.")
  forget_toward_init: bool = option(False, "The forget gate decays the "
                                    "learner's parameters toward theta_0 "
                                    "instead of toward zero.")
  per_parameter_lr: bool = option(False, "Learn a positive step-size "
                                  "multiplier alpha per learner parameter "
                                  "(Meta-SGD's learning rates) on top of the "
                                  "input gate.")

  def __post_init__(self):
    super().__post_init__()
    if not self.input_gate_scale > 0:  # also refuses NaN
      raise ValueError("--input_gate_scale must be positive, got "
                       f"{self.input_gate_scale!r}. 1 is the paper's cell.")


def build(options: MetaLSTMOptions, learner, config):
  from metalstm_tf.methods.gradient import GradientMethod
  from metalstm_tf.update_rules.meta_lstm import MetaLSTM
  rule = MetaLSTM(learner.initial_theta(), hidden_size=options.hidden_size,
                  preprocess=options.preprocess, seed=config.seed,
                  fused=config.fused_kernel,
                  input_gate_scale=options.input_gate_scale,
                  forget_toward_init=options.forget_toward_init,
                  per_parameter_lr=options.per_parameter_lr)
  return GradientMethod(learner, rule, config.inner_steps,
                        config.inner_batch_size, options.second_order)


SPEC = register(MethodSpec(
    name="meta_lstm", options=MetaLSTMOptions, build=build,
    summary="the meta-learner LSTM (Ravi & Larochelle 2017)",
    option_defaults=coordinate_lstm_defaults))
