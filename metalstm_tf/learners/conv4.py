"""The Conv-4 learner of Ravi & Larochelle, 2017, "Optimization as a Model
for Few-Shot Learning".

4 x [3x3 conv (same padding), batch norm, ReLU, 2x2 max-pool] + linear.
Batch norm normalises with the current batch's statistics (training and test
alike; nothing is carried across episodes), so the learner has no
non-parameter state. Given `reference` examples (the support set), it
normalises with theirs instead, and then each image's output depends on that
image alone (per-query prediction).

With `fused` (the default where the project's CPU kernels build), each
block's bias, batch norm, ReLU and max-pool run as one C++ op forward and one
backward (`metalstm_tf/kernels/conv_block.cc`), which neither stores nor
re-reads the intermediate activations; the values equal `block_tail`'s up to
rounding (tested, to second order). `standard_ops()` turns it off, e.g. for
SavedModels.

With `conv_precision="bfloat16"` the convolutions take their input and
filters rounded to bfloat16, sum the products in float32 (oneDNN) and round
the output to bfloat16, which is then cast back to float32; their gradients
are computed the same way. Everything else stays float32.
"""

import keras
import tensorflow as tf

from metalstm_tf import kernels
from metalstm_tf.block_ops import BN_EPSILON, block_tail
from metalstm_tf.learners.base import Learner


def fused_block_tail(x, bias, gamma, beta):
  """`block_tail` as the fused kernel, or None where it does not apply
  (the kernels did not build, or channels are not a multiple of 8)."""
  module = kernels.library()
  if module is None or x.shape[-1] is None or x.shape[-1] % 8:
    return None
  return module.batch_norm_relu_pool(x, bias, gamma, beta,
                                     epsilon=BN_EPSILON)[0]


class Conv4Learner(Learner):
  """Conv-4 classifier whose forward pass takes its parameters.

  Args:
    way: number of classes.
    image_shape: `(H, W, C)`.
    filters: channels of every conv layer.
    seed: seed of the initial weights.
    fused: use the fused block kernel where it is available.
    conv_precision: "float32" or "bfloat16", the convolutions' inputs.
  """

  def __init__(self, way: int, image_shape: tuple[int, int, int],
               filters: int = 32, seed: int | None = None,
               fused: bool = True, conv_precision: str = "float32",
               **kwargs):
    super().__init__(**kwargs)
    if conv_precision not in ("float32", "bfloat16"):
      raise ValueError(f"conv_precision must be 'float32' or 'bfloat16', got "
                       f"{conv_precision!r}.")
    self.conv_dtype = tf.as_dtype(conv_precision)
    self.way, self.image_shape, self.filters = way, tuple(image_shape), filters
    self.fused = fused
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

  batch_dependent = True
  NUM_BODY_PARAMS = 16  # 4 blocks x (kernel, bias, gamma, beta)

  def forward(self, params: list[tf.Tensor], x: tf.Tensor,
              reference: tf.Tensor | None = None) -> tf.Tensor:
    """Logits `[B, way]` of images `x` `[B, H, W, C]`; batch norm uses the
    statistics of `reference` images `[R, H, W, C]` if given, else of `x`."""
    x = self.features(params[:self.NUM_BODY_PARAMS], x, reference)
    return tf.matmul(x, params[16]) + params[17]

  def features(self, params: list[tf.Tensor], x: tf.Tensor,
               reference: tf.Tensor | None = None) -> tf.Tensor:
    """The four blocks' output, flattened: `[B, feature_size]`; `params`
    are the first `NUM_BODY_PARAMS` (the classifier's are not used)."""
    num_reference = None
    if reference is not None:  # One pass over both; moments of the first R.
      num_reference = tf.shape(reference)[0]
      x = tf.concat([reference, x], axis=0)
    for i in range(4):
      kernel, bias, gamma, beta = params[4 * i:4 * i + 4]
      x = self._conv(x, kernel)
      fused = (fused_block_tail(x, bias, gamma, beta)
               if self.fused and reference is None else None)
      x = (block_tail(x, bias, gamma, beta, num_reference) if fused is None
           else fused)
    x = tf.reshape(x, [-1, self.feature_size])
    return x if reference is None else x[num_reference:]

  def _conv(self, x, kernel):
    """3x3 same-padding convolution in `conv_dtype`, output float32."""
    if self.conv_dtype == tf.float32:
      return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    y = tf.nn.conv2d(tf.cast(x, self.conv_dtype),
                     tf.cast(kernel, self.conv_dtype), strides=1,
                     padding="SAME")
    return tf.cast(y, tf.float32)

  def loss(self, outputs, y):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                       logits=outputs))

  def metric(self, outputs, y):
    return tf.reduce_mean(
        tf.cast(tf.equal(tf.argmax(outputs, -1, output_type=tf.int32), y),
                tf.float32))
