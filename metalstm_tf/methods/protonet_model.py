"""`protonet`: Prototypical Networks (Snell et al. 2017, Prototypical
Networks for Few-shot Learning). The Conv-4 learner without its classifier
is the embedding; a class's prototype is the mean embedding of its support
images; a query's logits are the negative squared Euclidean distances to the
prototypes. No inner loop: the embedding is the meta-parameter.

Batch norm normalises the support and the query images each with their own
batch's statistics, as the learners of the gradient-fed methods do; per-query
(`transductive=False`) the queries use the support images' statistics.
"""

import tensorflow as tf

from metalstm_tf.learners.conv4 import Conv4Learner
from metalstm_tf.methods import embedding
from metalstm_tf.methods.base import EpisodeOutput, Method


class ProtoNet(Method):
  """Args: learner: a `Conv4Learner` (its body's weights start the
  embedding)."""

  def __init__(self, learner: Conv4Learner, **kwargs):
    super().__init__(learner, **kwargs)
    self.embedding = embedding.add_body_weight(self, learner)
    self.built = True

  def embed(self, x, reference=None):
    return embedding.embed(self.learner, self.embedding, x, reference)

  def run(self, support_x, support_y, query_x, keep_steps=False,
          transductive=True):
    one_hot = tf.one_hot(support_y, self.learner.way)  # [S, way]
    prototypes = tf.matmul(one_hot, self.embed(support_x), transpose_a=True)
    prototypes /= tf.reduce_sum(one_hot, axis=0)[:, None]  # [way, D]
    queries = self.embed(query_x, None if transductive else support_x)
    distances = (tf.reduce_sum(tf.square(queries), 1, keepdims=True) -
                 2.0 * tf.matmul(queries, prototypes, transpose_b=True) +
                 tf.reduce_sum(tf.square(prototypes), 1)[None, :])
    return EpisodeOutput(outputs=-distances, step_outputs=[], traces={})
