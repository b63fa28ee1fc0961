"""Update rules: learned optimizers and baselines behind one interface."""

from metalstm_tf.update_rules.base import UpdateRule
from metalstm_tf.update_rules.meta_complete_lstm import MetaCompleteLSTM
from metalstm_tf.update_rules.meta_gru import MetaGRU
from metalstm_tf.update_rules.meta_lstm import MetaLSTM, MetaLSTMState
from metalstm_tf.update_rules.meta_sgd import MetaSGD
from metalstm_tf.update_rules.sgd import SGD
from metalstm_tf.update_rules.turtle import Turtle
