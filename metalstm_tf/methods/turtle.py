"""`turtle`: Huisman et al., Stateless Neural Meta-Learning using
Second-Order Gradients: a coordinate-wise MLP update network over the raw
gradient with learned per-parameter step sizes; second order, 5 inner
steps."""

import dataclasses

from metalstm_tf.methods.registry import MethodSpec, option, register


@dataclasses.dataclass(frozen=True)
class TurtleOptions:
  turtle_layers: int = option(5, "TURTLE: hidden layers of the update "
                              "network.")
  turtle_units: int = option(20, "TURTLE: ReLU units per hidden layer.")
  turtle_inputs: tuple = option(("grad",), "TURTLE: the update network's "
                                "inputs, 'grad' first, from ['grad', 'loss', "
                                "'time'] (raw gradient, raw loss, step "
                                "index).")
  second_order: bool = option(True, "Back-propagate through the learner's "
                              "gradients.")

  def __post_init__(self):
    object.__setattr__(self, "turtle_inputs", tuple(self.turtle_inputs))


def build(options: TurtleOptions, learner, config):
  from metalstm_tf.methods.gradient import GradientMethod
  from metalstm_tf.update_rules.turtle import Turtle
  rule = Turtle(learner.initial_theta(), hidden_layers=options.turtle_layers,
                hidden_units=options.turtle_units,
                inputs=options.turtle_inputs, seed=config.seed)
  return GradientMethod(learner, rule, config.inner_steps,
                        config.inner_batch_size, options.second_order)


SPEC = register(MethodSpec(
    name="turtle", options=TurtleOptions, build=build,
    summary="stateless MLP update network, per-parameter step sizes "
            "(Huisman et al.)",
    config_defaults=lambda dataset, shots: {"inner_steps": 5}))
