"""`op_lstm`: OP-LSTM (Huisman et al. 2023, Are LSTMs Good Few-Shot
Learners?, Eqs. 12-17).

Every adapted dense layer l has a weight matrix that is the 2D hidden state
H_l `[out, in]` of a coordinate-wise LSTM (one state per node, LSTM weights
shared by the layers of one activation). In each of `op_passes` passes over
the support set:

- forward (Eq. 13): a_l(x_i) = sigma_l(H_l a_{l-1}(x_i) + b_l);
- the LSTM inputs (Eq. 17): at the output layer, per node j,
  z = [prediction_j(x_i), target_j(y_i)] (the prediction is the softmax
  output for classifiers, the output itself for regression); at a hidden
  layer, z = [a_l(x_i)_j, (H_{l+1}^T h_{l+1}(x_i))_j], the message of the
  layer above passed back through its weights, as backpropagation passes
  errors;
- each example's state is the LSTM's step from the node's pooled state
  (Eq. 15), giving its hidden value h_l(x_i); the states are then mean-pooled
  over the support set (Eq. 16);
- H_l moves by the mean of the normalised outer products
  h_l(x_i) a_{l-1}(x_i)^T / ||h_l(x_i) a_{l-1}(x_i)^T||_F with step `op_step`
  (Eq. 14), all layers from the pass's forward activations.

Queries: the forward pass with the final H (Eq. 12). The initial H, the
biases, the LSTMs and the body are meta-learned; no gradients inside a task.

Which layers: for images, the output layer on top of a meta-learned Conv-4
body (the paper: its messages cannot pass back through max-pooling); for
regression (sine), every layer of the MLP learner (the whole network, as
in the paper's sine experiments), with one LSTM for the ReLU layers and one
for the output layer.
"""

import keras
import tensorflow as tf

from metalstm_tf.learners.conv4 import Conv4Learner
from metalstm_tf.methods import embedding
from metalstm_tf.methods.base import EpisodeOutput, Method


class OPLSTM(Method):
  """Args:
    learner: a `Conv4Learner` (its output layer is adapted), or the MLP
      learner of regression (all its layers are).
    options: the method's options (`op_lstm.OPLSTMOptions`, which builds
      this class).
    seed: seed of the LSTMs' initial weights.
  """

  def __init__(self, learner, options, seed: int = 0, **kwargs):
    super().__init__(learner, **kwargs)
    self.passes, self.normalize = options.op_passes, options.op_normalize
    self.step = float(options.op_step)
    if options.op_learn_step:
      self.step = self.add_weight(shape=(), initializer="zeros",
                                  name="op_step")
      self.step.assign(float(options.op_step))
    self._classifier = isinstance(learner, Conv4Learner)
    params = learner.layout.unflatten(learner.initial_theta())
    if self._classifier:
      self.embedding = embedding.add_body_weight(self, learner)
      dense = [(params[-2], params[-1])]
    else:
      self.embedding = None
      dense = list(zip(params[0::2], params[1::2]))
    self.h0s, self.biases = [], []
    for k, (kernel, bias) in enumerate(dense):  # kernel [in, out]
      suffix = "" if k == len(dense) - 1 else f"_{k + 1}"
      h0 = self.add_weight(shape=tuple(kernel.shape[::-1]),
                           initializer="zeros", name="h0" + suffix)
      h0.assign(tf.transpose(kernel))
      b = self.add_weight(shape=tuple(bias.shape), initializer="zeros",
                          name="bias" + suffix)
      b.assign(bias)
      self.h0s.append(h0)
      self.biases.append(b)
    self.cells = self._lstm_cells(options.op_hidden, seed, "op_lstm")
    self.hidden_cells = (self._lstm_cells(options.op_hidden, seed + 20,
                                          "op_lstm_hidden")
                         if len(dense) > 1 else [])
    self.built = True

  @property
  def h0(self):
    """The output layer's initial weights."""
    return self.h0s[-1]

  @property
  def bias(self):
    """The output layer's bias."""
    return self.biases[-1]

  @staticmethod
  def _lstm_cells(hidden: int, seed: int, name: str):
    glorot = lambda k: keras.initializers.GlorotUniform(seed=seed + 200 + k)
    cells = [
        keras.layers.LSTMCell(
            units, kernel_initializer=glorot(k),
            recurrent_initializer=keras.initializers.Orthogonal(
                seed=seed + 210 + k), name=f"{name}_{k + 1}")
        for k, units in enumerate((hidden, 1))]
    cells[0].build((None, 2))
    cells[1].build((None, hidden))
    return cells

  def _features(self, x, reference=None):
    """The inputs of the first adapted layer: the Conv-4 body's features, or
    the inputs themselves."""
    if self.embedding is None:
      return tf.convert_to_tensor(x)
    return embedding.embed(self.learner, self.embedding, x, reference)

  @staticmethod
  def _lstm(cells, z, states):
    """Both layers of `cells` on `z` `[N, 2]` from `states` (four
    `[N, units]`)."""
    out1, s1 = cells[0](z, states[:2])
    out2, s2 = cells[1](out1, states[2:])
    return out2[:, 0], list(s1) + list(s2)

  def _forward(self, weights, x):
    """Every layer's activations `[a_0 = x, a_1, ..., a_L]` (a_L: the
    output layer's pre-activations, i.e. logits or regression outputs)."""
    acts = [x]
    for k, (h_mat, b) in enumerate(zip(weights, self.biases)):
      pre = tf.matmul(acts[-1], h_mat, transpose_b=True) + b
      acts.append(pre if k == len(weights) - 1 else tf.nn.relu(pre))
    return acts

  def _node_step(self, cells, z_pred, z_other, states):
    """The coordinate-wise LSTM on every example and node of a layer:
    inputs `[M, d]` twice, pooled `states` (four `[d, units]`). Returns the
    hidden values `[M, d]` and the new pooled states (Eqs. 15-16)."""
    m, d = tf.shape(z_pred)[0], tf.shape(z_pred)[1]
    z = tf.reshape(tf.stack([z_pred, z_other], axis=-1), [-1, 2])  # i*d + j
    tiled = [tf.tile(s, [m, 1]) for s in states]
    h, new = self._lstm(cells, z, tiled)
    pooled = [tf.reduce_mean(tf.reshape(s, [m, d, -1]), axis=0) for s in new]
    return tf.reshape(h, [m, d]), pooled

  def _update(self, h, a, m):
    """The mean over the support set of the outer products h(x_i) a(x_i)^T
    `[d_out, d_in]`, each normalised (Eq. 14) or the mean normalised."""
    if self.normalize == "example":
      # ||h a^T||_F = ||h|| ||a||.
      scale = 1.0 / tf.maximum(tf.norm(h, axis=1) * tf.norm(a, axis=1),
                               1e-12)
      return tf.matmul(h * scale[:, None], a, transpose_a=True) / m
    mean = tf.matmul(h, a, transpose_a=True) / m
    return mean / tf.maximum(tf.norm(mean), 1e-12)

  def summaries(self):
    return ({} if isinstance(self.step, float) else
            {"op_step": tf.convert_to_tensor(self.step)})

  def run(self, support_x, support_y, query_x, keep_steps=False,
          transductive=True):
    a0 = self._features(support_x)  # [M, in]
    m = tf.cast(tf.shape(a0)[0], tf.float32)
    out = self.h0.shape[0]
    target = (tf.one_hot(support_y, out) if self._classifier else
              tf.reshape(tf.cast(support_y, tf.float32), [-1, 1]))
    units = [c.units for c in self.cells for _ in range(2)]
    # Pooled LSTM states, one row per node, per adapted layer.
    states = [[tf.zeros([h0.shape[0], u]) for u in units] for h0 in self.h0s]
    weights = [tf.convert_to_tensor(h0) for h0 in self.h0s]
    last = len(weights) - 1
    for _ in range(self.passes):
      acts = self._forward(weights, a0)
      pred = tf.nn.softmax(acts[-1]) if self._classifier else acts[-1]
      hs = [None] * len(weights)
      hs[last], states[last] = self._node_step(self.cells, pred, target,
                                               states[last])
      for k in range(last - 1, -1, -1):  # messages back through H_{k+1}
        message = tf.matmul(hs[k + 1], weights[k + 1])  # [M, d_k]
        hs[k], states[k] = self._node_step(self.hidden_cells, acts[k + 1],
                                           message, states[k])
      for k in range(len(weights)):
        weights[k] = weights[k] + self.step * self._update(hs[k], acts[k], m)
    q = self._features(query_x, None if transductive else support_x)
    outputs = self._forward(weights, q)[-1]
    return EpisodeOutput(outputs=outputs, step_outputs=[], traces={})
