"""`plain_lstm`: the black-box LSTM learner (Hochreiter et al. 2001,
Learning to Learn Using Gradient Descent) as Huisman et al. run it (Are LSTMs
Good Few-Shot Learners?, 2023, Eq. 10): the LSTM learns in its state, its
weights fixed within a task.

Every support pair x' = [features(x), one-hot(y)] (sine: [x, y]) goes
through the LSTM as one batch from the same state, and the states are
mean-pooled over the support set: s_{t+1} = mean_i m(x'_i; s_t), which makes
the state invariant to the support set's order. After `support_passes` such
steps a query [features(x), 0] is read from the pooled state, and a linear
layer maps the LSTM's output to the logits (sine: the prediction). For
images the features are a Conv-4 body without its classifier, meta-learned
with the LSTM (batch norm as in the other methods: the query batch's own
statistics, or the support set's per query). No gradients are fed to
anything inside a task.
"""

import keras
import tensorflow as tf

from metalstm_tf.learners.conv4 import Conv4Learner
from metalstm_tf.methods import embedding
from metalstm_tf.methods.base import EpisodeOutput, Method


class PlainLSTM(Method):
  """Args:
    learner: a `Conv4Learner` (its body starts the feature extractor) or a
      regression learner (then the LSTM reads the raw inputs).
    lstm_units, support_passes: the options.
    seed: seed of the LSTM's and the output layer's initial weights.
  """

  def __init__(self, learner, lstm_units: int, support_passes: int,
               seed: int = 0, lstm_layers: int = 1, **kwargs):
    super().__init__(learner, **kwargs)
    self.support_passes = support_passes
    self._images = isinstance(learner, Conv4Learner)
    if self._images:
      self.embedding = embedding.add_body_weight(self, learner)
      self._targets, features = learner.way, learner.feature_size
      outputs = learner.way
    else:
      self._targets = 1
      features, outputs = learner.example_shape[0], 1
    glorot = lambda k: keras.initializers.GlorotUniform(seed=seed + k)
    self.cells = []
    for k in range(lstm_layers):  # the first keeps the one-layer LSTM's seeds
      cell = keras.layers.LSTMCell(
          lstm_units, kernel_initializer=glorot(100 + 10 * k),
          recurrent_initializer=keras.initializers.Orthogonal(
              seed=seed + 101 + 10 * k),
          name="lstm" if k == 0 else f"lstm_{k + 1}")
      cell.build((None, features + self._targets if k == 0 else lstm_units))
      self.cells.append(cell)
    self.cell = self.cells[0]
    self.head = keras.layers.Dense(outputs, kernel_initializer=glorot(102),
                                   name="head")
    self.head.build((None, lstm_units))
    self.built = True

  def _features(self, x, reference=None):
    if not self._images:
      return x
    return embedding.embed(self.learner, self.embedding, x, reference)

  def _targets_of(self, y):
    if self._images:
      return tf.one_hot(y, self._targets)
    return tf.reshape(tf.cast(y, tf.float32), [-1, 1])

  def run(self, support_x, support_y, query_x, keep_steps=False,
          transductive=True):
    support = tf.concat([self._features(support_x),
                         self._targets_of(support_y)], axis=1)
    units = self.cell.units
    # [h, c] of every layer, pooled over the support set.
    states = [[tf.zeros([1, units]), tf.zeros([1, units])]
              for _ in self.cells]
    for _ in range(self.support_passes):
      _, news = self._stack(support, states)
      states = [[tf.reduce_mean(s, axis=0, keepdims=True) for s in new]
                for new in news]
    features = self._features(query_x, None if transductive else support_x)
    queries = tf.concat([features, tf.zeros([tf.shape(features)[0],
                                             self._targets])], axis=1)
    out, _ = self._stack(queries, states)
    return EpisodeOutput(outputs=self.head(out), step_outputs=[], traces={})

  def _stack(self, x, states):
    """Every layer on the rows of `x`, each row from the pooled `states`;
    returns the last layer's output and every layer's per-row states."""
    n = tf.shape(x)[0]
    news = []
    for cell, state in zip(self.cells, states):
      x, new = cell(x, [tf.tile(s, [n, 1]) for s in state])
      news.append(new)
    return x, news
