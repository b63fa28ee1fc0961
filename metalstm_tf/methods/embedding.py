"""A meta-learned Conv-4 body as a flat variable: the feature extractor of
the methods that learn no classifier by gradients (protonet, plain_lstm)."""

import tensorflow as tf

from metalstm_tf.learners.conv4 import Conv4Learner


def add_body_weight(layer, learner: Conv4Learner):
  """Adds to `layer` the variable `embedding`, `[body parameters]`, started
  at `learner`'s own initial body weights."""
  size = sum(learner.layout.sizes[:Conv4Learner.NUM_BODY_PARAMS])
  variable = layer.add_weight(shape=(size,), initializer="zeros",
                              name="embedding")
  variable.assign(learner.initial_theta()[:size])
  return variable


def embed(learner: Conv4Learner, body, x, reference=None):
  """Features `[B, feature_size]` of images `x` under the flat `body`
  (batch norm from `reference` if given, see `Conv4Learner.features`)."""
  count = Conv4Learner.NUM_BODY_PARAMS
  parts = tf.split(tf.convert_to_tensor(body), learner.layout.sizes[:count])
  params = [tf.reshape(p, s) for p, s in
            zip(parts, learner.layout.shapes[:count])]
  return learner.features(params, x, reference)
