"""The Conv-4 learner of Ravi & Larochelle (BRIEF §1).

4 x [3x3 conv (same padding), batch norm, ReLU, 2x2 max-pool] + linear.
Batch norm always normalises with the current batch's statistics (training
and test alike; nothing is carried across episodes), so the learner has no
non-parameter state.
"""

import keras
import tensorflow as tf

from metalstm_tf.learners.base import Learner

BN_EPSILON = 1e-5


def batch_norm(x, gamma, beta):
  """Batch norm of NHWC `x` with the batch's own mean and (biased) variance.

  One fused op forward and one backward instead of the moments and about ten
  element-wise ops (faster: RESULTS.md); equal to
  `tf.nn.batch_normalization(x, *tf.nn.moments(x, [0, 1, 2]), beta, gamma,
  BN_EPSILON)` up to rounding (tested), and twice differentiable.
  """
  y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta,
                                             epsilon=BN_EPSILON,
                                             is_training=True)
  return y


class Conv4Learner(Learner):
  """Conv-4 classifier whose forward pass takes its parameters.

  Args:
    way: number of classes.
    image_shape: `(H, W, C)`.
    filters: channels of every conv layer.
    seed: seed of the initial weights.
  """

  def __init__(self, way: int, image_shape: tuple[int, int, int],
               filters: int = 32, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.way, self.image_shape, self.filters = way, tuple(image_shape), filters
    self.example_shape = self.image_shape
    h, w, c = self.image_shape
    init = lambda i: keras.initializers.GlorotUniform(
        seed=None if seed is None else seed + i)
    in_ch = c
    for i in range(4):
      self.add_weight(shape=(3, 3, in_ch, filters), initializer=init(i),
                      name=f"conv{i}_kernel")
      self.add_weight(shape=(filters,), initializer="zeros",
                      name=f"conv{i}_bias")
      self.add_weight(shape=(filters,), initializer="ones", name=f"bn{i}_gamma")
      self.add_weight(shape=(filters,), initializer="zeros", name=f"bn{i}_beta")
      in_ch = filters
      h, w = h // 2, w // 2
    if h < 1 or w < 1:
      raise ValueError(f"Images of {image_shape} are too small for 4 pooling "
                       "layers; they must be at least 16x16.")
    self.feature_size = h * w * filters
    self.add_weight(shape=(self.feature_size, way), initializer=init(4),
                    name="logits_kernel")
    self.add_weight(shape=(way,), initializer="zeros", name="logits_bias")
    self.built = True

  NUM_BODY_PARAMS = 16  # 4 blocks x (kernel, bias, gamma, beta)

  def forward(self, params: list[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """Logits `[B, way]` of images `x` `[B, H, W, C]`."""
    x = self.features(params[:self.NUM_BODY_PARAMS], x)
    return tf.matmul(x, params[16]) + params[17]

  def features(self, params: list[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """The four blocks' output, flattened: `[B, feature_size]`; `params`
    are the first `NUM_BODY_PARAMS` (the classifier's are not used)."""
    for i in range(4):
      kernel, bias, gamma, beta = params[4 * i:4 * i + 4]
      x = tf.nn.conv2d(x, kernel, strides=1, padding="SAME") + bias
      x = batch_norm(x, gamma, beta)
      x = tf.nn.relu(x)
      x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
    return tf.reshape(x, [-1, self.feature_size])

  def loss(self, outputs, y):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                       logits=outputs))

  def metric(self, outputs, y):
    return tf.reduce_mean(
        tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), y),
                tf.float32))
