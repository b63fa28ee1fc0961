"""`meta_gru` and `meta_complete_lstm`: the GRU-like and Complete-LSTM meta
cells of Furrer et al., Meta-Learner LSTM for Few Shot Learning, on the same
layer-1 LSTM as the paper's cell (TensorFlow ops; the fused kernel covers
the paper's cell only)."""

from metalstm_tf.methods.meta_lstm import (CoordinateLSTMOptions,
                                          coordinate_lstm_defaults)
from metalstm_tf.methods.registry import MethodSpec, register


def _builder(rule_name: str):
  """The `build` of the update rule class `rule_name` of
  `metalstm_tf.update_rules`."""
  def build(options: CoordinateLSTMOptions, learner, config):
    from metalstm_tf import update_rules
    from metalstm_tf.methods.gradient import GradientMethod
    rule_class = getattr(update_rules, rule_name)
    rule = rule_class(learner.initial_theta(), hidden_size=options.hidden_size,
                      preprocess=options.preprocess, seed=config.seed)
    return GradientMethod(learner, rule, config.inner_steps,
                          config.inner_batch_size, options.second_order)
  return build


GRU = register(MethodSpec(
    name="meta_gru", options=CoordinateLSTMOptions, build=_builder("MetaGRU"),
    summary="GRU-like meta cell, one update gate (Furrer et al.)",
    option_defaults=coordinate_lstm_defaults))
COMPLETE_LSTM = register(MethodSpec(
    name="meta_complete_lstm", options=CoordinateLSTMOptions,
    build=_builder("MetaCompleteLSTM"),
    summary="meta cell with an output gate (Furrer et al.'s Complete-LSTM)",
    option_defaults=coordinate_lstm_defaults))
