"""`op_lstm`: OP-LSTM (Huisman et al. 2023, Are LSTMs Good Few-Shot
Learners?, Eqs. 12-17) on the output layer of a meta-learned body.

The output layer's weight matrix is the 2D hidden state H `[out, in]` of a
coordinate-wise LSTM (one state per output node, shared LSTM weights). In
each of `op_passes` passes over the support set, for every support example
i and output node j the LSTM reads z = [prediction_j(x_i), target_j(y_i)]
(Eq. 17 at the output layer; the prediction is the softmax output for
classifiers, the output itself for regression) from the node's pooled state,
giving a scalar hidden value h_j(x_i) (Eq. 15); the states are mean-pooled
over the support set (Eq. 16), and H moves by the mean of the normalised
outer products h(x_i) a(x_i)^T / ||h(x_i) a(x_i)^T||_F with step `op_step`
(Eq. 14), a(x) the body's features. Queries: H_T a(x) + b (Eq. 12). H_0, b,
the LSTM and the body are meta-learned; no gradients inside a task.

Body: the Conv-4 learner without its classifier for images; for regression
(sine) the MLP learner without its last layer.
"""

import dataclasses

import keras
import tensorflow as tf

from metalstm_tf.learners.conv4 import Conv4Learner
from metalstm_tf.methods import embedding
from metalstm_tf.methods.base import EpisodeOutput, Method
from metalstm_tf.methods.registry import (MethodSpec, option, register,
                                          require_positive_ints)


# gamma for images: each example's normalised outer product has norm 1, so
# gamma bounds how far a pass moves the output layer. On Omniglot 5-way
# 1-shot validation (2,000 episodes, 32 filters, seed 0) gamma 0.1 / 1 / 10
# / 100 reached 38.6 / 93.5 / 94.9 / 94.8 %.
IMAGE_STEP = 10.0


@dataclasses.dataclass(frozen=True)
class OPLSTMOptions:
  op_hidden: int = option(20, "op_lstm: units of the coordinate-wise LSTM's "
                          "first layer (its second has 1: the node's hidden "
                          "value; the paper's 20-1).")
  op_passes: int = option(5, "op_lstm: passes over the support set.")
  op_step: float = option(0.1, "op_lstm: step size gamma of the outer-product "
                          "update of the output layer (default: 10 for "
                          "images, chosen on Omniglot 5-way 1-shot "
                          "validation among 0.1, 1, 10 and 100; 0.1 for "
                          "sine).")

  def __post_init__(self):
    require_positive_ints(self, "op_hidden", "op_passes")
    if not (isinstance(self.op_step, (int, float)) and self.op_step > 0 and
            self.op_step < float("inf")):
      raise ValueError(f"--op_step must be a positive finite number, got "
                       f"{self.op_step!r}.")


class OPLSTM(Method):
  """Args:
    learner: a `Conv4Learner`, or the sine MLP learner.
    options: `OPLSTMOptions`.
    seed: seed of the LSTM's initial weights.
  """

  def __init__(self, learner, options: OPLSTMOptions, seed: int = 0,
               **kwargs):
    super().__init__(learner, **kwargs)
    self.passes, self.step = options.op_passes, float(options.op_step)
    self._classifier = isinstance(learner, Conv4Learner)
    params = learner.layout.unflatten(learner.initial_theta())
    self.embedding = embedding.add_body_weight(self, learner)
    kernel, bias = params[-2], params[-1]  # [in, out], [out]
    self.h0 = self.add_weight(shape=tuple(kernel.shape[::-1]),
                              initializer="zeros", name="h0")
    self.h0.assign(tf.transpose(kernel))
    self.bias = self.add_weight(shape=tuple(bias.shape), initializer="zeros",
                                name="bias")
    glorot = lambda k: keras.initializers.GlorotUniform(seed=seed + k)
    self.cells = [
        keras.layers.LSTMCell(
            units, kernel_initializer=glorot(200 + k),
            recurrent_initializer=keras.initializers.Orthogonal(
                seed=seed + 210 + k), name=f"op_lstm_{k + 1}")
        for k, units in enumerate((options.op_hidden, 1))]
    self.cells[0].build((None, 2))
    self.cells[1].build((None, options.op_hidden))
    self.built = True

  def _features(self, x, reference=None):
    return embedding.embed(self.learner, self.embedding, x, reference)

  def _lstm(self, z, states):
    """Both layers on `z` `[N, 2]` from `states` (four `[N, units]`)."""
    out1, s1 = self.cells[0](z, states[:2])
    out2, s2 = self.cells[1](out1, states[2:])
    return out2[:, 0], list(s1) + list(s2)

  def run(self, support_x, support_y, query_x, keep_steps=False,
          transductive=True):
    a = self._features(support_x)  # [M, in]
    m = tf.shape(a)[0]
    out = self.h0.shape[0]
    target = (tf.one_hot(support_y, out) if self._classifier else
              tf.reshape(tf.cast(support_y, tf.float32), [-1, 1]))
    units = [c.units for c in self.cells for _ in range(2)]
    states = [tf.zeros([out, u]) for u in units]  # pooled, one row per node
    h_mat = tf.convert_to_tensor(self.h0)
    norm_a = tf.norm(a, axis=1)  # [M]
    for _ in range(self.passes):
      pred = tf.matmul(a, h_mat, transpose_b=True) + self.bias  # [M, out]
      if self._classifier:
        pred = tf.nn.softmax(pred)
      z = tf.reshape(tf.stack([pred, target], axis=-1), [-1, 2])  # [M*out, 2]
      tiled = [tf.tile(s, [m, 1]) for s in states]  # row i*out + j
      h, new = self._lstm(z, tiled)
      h = tf.reshape(h, [m, out])
      states = [tf.reduce_mean(tf.reshape(s, [m, out, -1]), axis=0)
                for s in new]
      # ||h a^T||_F = ||h|| ||a||: each example's outer product, normalised.
      scale = 1.0 / tf.maximum(tf.norm(h, axis=1) * norm_a, 1e-12)
      update = tf.matmul(h * scale[:, None], a, transpose_a=True)
      h_mat = h_mat + self.step * update / tf.cast(m, tf.float32)
    q = self._features(query_x, None if transductive else support_x)
    logits = tf.matmul(q, h_mat, transpose_b=True) + self.bias
    return EpisodeOutput(outputs=logits, step_outputs=[], traces={})


def build(options: OPLSTMOptions, learner, config):
  return OPLSTM(learner, options, seed=config.seed)


SPEC = register(MethodSpec(
    name="op_lstm", options=OPLSTMOptions, build=build,
    summary="OP-LSTM: a coordinate-wise LSTM updates the output layer by "
            "normalised outer products, mean-pooled over the support set "
            "(Huisman et al. 2023)",
    option_defaults=lambda dataset, shots: (
        {} if dataset == "sine" else {"op_step": IMAGE_STEP}),
    config_defaults=lambda dataset, shots: {"filters": 64}))
