"""Per-image data augmentation for training episodes (Furrer et al.,
"Meta-Learner LSTM for Few Shot Learning", §IV).

Random crops with an aspect-ratio change resized back to the input size, and
colour jitter (brightness, contrast, saturation, hue) for RGB images. Every
image of a batch gets its own random parameters, drawn with stateless
`tf.random` ops from one seed, so a seed gives the same pixels every time.
All ops are batched (`tf.image.crop_and_resize`, per-image colour matrices).
"""

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Ranges of the random transforms.

  Attributes:
    crop_area: fraction of the image area kept by the crop, (min, max).
    crop_ratio: aspect ratio (width / height) of the crop, (min, max).
    brightness, contrast, saturation: multiplicative factor in [1-x, 1+x].
    hue: hue rotation in [-x, x] turns (0.1 = 36 degrees).
  """
  crop_area: tuple[float, float] = (0.5, 1.0)
  crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.4
  hue: float = 0.1


def _uniform(seed, n, low, high):
  return tf.random.stateless_uniform([n], seed=seed, minval=low, maxval=high)


def random_resized_crop(images: tf.Tensor, seed: tf.Tensor,
                        config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
  """Crops a random box of each image and resizes it back.

  Args:
    images: `[B, H, W, C]` float32.
    seed: `[2]` int seed of the stateless ops.
  Returns:
    `[B, H, W, C]` float32.
  """
  n = tf.shape(images)[0]
  s = tf.random.experimental.stateless_split(seed, 4)
  area = _uniform(s[0], n, *config.crop_area)
  log_ratio = _uniform(s[1], n, math.log(config.crop_ratio[0]),
                       math.log(config.crop_ratio[1]))
  ratio = tf.exp(log_ratio)
  crop_h = tf.minimum(tf.sqrt(area / ratio), 1.0)
  crop_w = tf.minimum(tf.sqrt(area * ratio), 1.0)
  y0 = _uniform(s[2], n, 0.0, 1.0) * (1.0 - crop_h)
  x0 = _uniform(s[3], n, 0.0, 1.0) * (1.0 - crop_w)
  boxes = tf.stack([y0, x0, y0 + crop_h, x0 + crop_w], axis=1)
  size = tf.shape(images)[1:3]
  out = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
  return tf.ensure_shape(out, images.shape)


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322),
               (0.211, -0.523, 0.312))


def _hue_rotation(angle: tf.Tensor) -> tf.Tensor:
  """`[B, 3, 3]` RGB matrices rotating the hue by `angle` radians.

  A hue shift is a rotation of the chroma plane (I, Q of YIQ) about the
  luma axis; unlike an HSV round trip it is one batched matrix product.
  """
  t = tf.constant(_RGB_TO_YIQ, tf.float32)
  t_inv = tf.linalg.inv(t)
  cos, sin = tf.cos(angle), tf.sin(angle)
  one, zero = tf.ones_like(angle), tf.zeros_like(angle)
  rot = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos],
                            axis=1), [-1, 3, 3])
  return tf.einsum("ij,bjk,kl->bil", t_inv, rot, t)


def color_jitter(images: tf.Tensor, seed: tf.Tensor,
                 config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
  """Random brightness, contrast, saturation and hue, per image.

  Applied in that order, the four transforms are affine in RGB, so they are
  composed exactly into one per-image map `A x + o` and clipped once:
  brightness `b x`; contrast `c (x - m) + m` with `m` the mean luma;
  saturation `S = s I + (1 - s) 1 w^T` (blend with luma `w^T x`); hue `H`
  (rotation about the grey axis). `S` and `H` fix grey, hence
  `A = c b H S` and `o = (1 - c) b mean(w^T x)`.

  Args:
    images: `[B, H, W, 3]` float32 in [0, 1].
    seed: `[2]` int seed of the stateless ops.
  Returns:
    `[B, H, W, 3]` float32 in [0, 1].
  """
  n = tf.shape(images)[0]
  s = tf.random.experimental.stateless_split(seed, 4)

  def factor(sd, x):
    return _uniform(sd, n, 1.0 - x, 1.0 + x)

  b = factor(s[0], config.brightness)
  c = factor(s[1], config.contrast)
  sat = tf.reshape(factor(s[2], config.saturation), [-1, 1, 1])
  angle = 2.0 * math.pi * _uniform(s[3], n, -config.hue, config.hue)
  luma = tf.constant([_RGB_TO_YIQ[0]], tf.float32)  # [1, 3]
  saturation = (sat * tf.eye(3) + (1.0 - sat) *
                tf.ones([3, 1]) @ luma)  # [B, 3, 3]
  matrix = tf.reshape(c * b, [-1, 1, 1]) * (_hue_rotation(angle) @ saturation)
  mean_luma = tf.reduce_mean(tf.einsum("bhwc,c->bhw", images, luma[0]),
                             axis=[1, 2])
  offset = tf.reshape((1.0 - c) * b * mean_luma, [-1, 1, 1, 1])
  x = tf.einsum("bhwc,bdc->bhwd", images, matrix) + offset
  return tf.clip_by_value(x, 0.0, 1.0)


def augment(images: tf.Tensor, seed: tf.Tensor,
            config: AugmentConfig = AugmentConfig()) -> tf.Tensor:
  """Crop for all images; colour jitter too when they have 3 channels."""
  crop_seed, color_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  x = random_resized_crop(images, crop_seed, config)
  if images.shape[-1] == 3:
    x = color_jitter(x, color_seed, config)
  return x
