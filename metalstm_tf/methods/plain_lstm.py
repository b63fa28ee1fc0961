"""`plain_lstm`, the black-box LSTM learner (Hochreiter et al. 2001;
Huisman et al. 2023): its options, defaults and registration. The network is
`plain_lstm_model.PlainLSTM`, imported (with TensorFlow) when it is built."""

import dataclasses

from metalstm_tf.methods.registry import (MethodSpec, option, register,
                                          require_positive_ints)


# Sine: Huisman et al.'s tuned setting (their random search on 5-shot sine):
# 2 layers of 40 units, 4 passes, 4 tasks per meta-update, Adam 4.7e-3. On
# 5-shot validation (70,000 tasks, seed 0) it reached MSE 0.0194 against
# 0.3186 for 1 layer, 2 passes, 1 task and 1e-3 (RESULTS.md).
SINE_OPTIONS = {"lstm_units": 40, "lstm_layers": 2, "support_passes": 4}
SINE_CONFIG = {"meta_batch_size": 4, "lr": 4.7e-3}


@dataclasses.dataclass(frozen=True)
class PlainLSTMOptions:
  lstm_units: int = option(256, "plain_lstm: units of the LSTM (default 256 "
                           "on images, 40 on sine; the paper tuned its sizes "
                           "per benchmark by random search).")
  support_passes: int = option(2, "plain_lstm: passes of the support set "
                               "through the LSTM, each from the state "
                               "mean-pooled over the previous pass (sine: "
                               "4).")
  lstm_layers: int = option(1, "plain_lstm: stacked LSTM layers of "
                            "--lstm_units each, every layer's state "
                            "mean-pooled (sine: 2).")

  def __post_init__(self):
    require_positive_ints(self, "lstm_units", "support_passes", "lstm_layers")


def build(options: PlainLSTMOptions, learner, config):
  from metalstm_tf.methods.plain_lstm_model import PlainLSTM
  return PlainLSTM(learner, options.lstm_units, options.support_passes,
                   seed=config.seed, lstm_layers=options.lstm_layers)


SPEC = register(MethodSpec(
    name="plain_lstm", options=PlainLSTMOptions, build=build,
    summary="the black-box LSTM learner reading (input, target) support "
            "pairs with mean-pooled states (Hochreiter et al. 2001; "
            "Huisman et al. 2023's permutation-invariant variant)",
    option_defaults=lambda dataset, shots: (SINE_OPTIONS if dataset == "sine"
                                            else {}),
    config_defaults=lambda dataset, shots: {
        "filters": 64, **(SINE_CONFIG if dataset == "sine" else {})}))
