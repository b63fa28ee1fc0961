"""Update rules: learned optimizers and baselines behind one interface."""

from metalstm_tf.update_rules.base import UpdateRule
from metalstm_tf.update_rules.meta_lstm import MetaLSTM, MetaLSTMState
from metalstm_tf.update_rules.sgd import SGD
