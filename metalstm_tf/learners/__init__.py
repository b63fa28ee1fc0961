"""Learners: networks whose parameters the meta-learner owns."""

from metalstm_tf.learners.base import Learner, ParamLayout
from metalstm_tf.learners.conv4 import Conv4Learner
from metalstm_tf.learners.mlp import MLPLearner
