"""A meta-learned copy of a learner's body (every layer but the output
layer) as one flat variable: the feature extractor of the methods that do
not learn it by inner-loop gradients (protonet, plain_lstm, op_lstm)."""

import tensorflow as tf

from metalstm_tf.learners.base import Learner


def add_body_weight(layer, learner: Learner):
  """Adds to `layer` the variable `embedding`, `[body parameters]`, started
  at `learner`'s own initial body weights."""
  size = learner.body_layout.size
  variable = layer.add_weight(shape=(size,), initializer="zeros",
                              name="embedding")
  variable.assign(learner.initial_theta()[:size])
  return variable


def embed(learner: Learner, body, x, reference=None):
  """Features of `x` under the flat `body` (`Learner.features`; batch norm
  from `reference` if given)."""
  params = learner.body_layout.unflatten(tf.convert_to_tensor(body))
  return learner.features(params, x, reference)
