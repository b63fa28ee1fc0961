"""Gradient and loss preprocessing of Andrychowicz et al. (2016), §3.2.

    x -> (log|x| / p, sgn x)   if |x| >= e^{-p}
    x -> (-1, e^{p} x)         otherwise

Both outputs are bounded for any magnitude, which lets one set of meta-weights
serve coordinates whose gradients differ by orders of magnitude.
"""

import math

import tensorflow as tf

DEFAULT_P = 10.0


def log_and_sign(x: tf.Tensor, p: float = DEFAULT_P,
                 axis: int = -1) -> tf.Tensor:
  """Preprocesses every element of `x`; returns the two outputs stacked along
  a new `axis` (by default the last: `x.shape + [2]`)."""
  x = tf.convert_to_tensor(x)
  threshold = math.exp(-p)
  big = tf.abs(x) >= threshold
  # The clamp keeps log finite (and its gradient defined) on the unused branch.
  first = tf.where(big, tf.math.log(tf.maximum(tf.abs(x), threshold)) / p,
                   -1.0)
  # e^p x is at least 1 in magnitude exactly where |x| >= e^{-p}: clipping it
  # to [-1, 1] gives sgn x there and e^p x elsewhere, in two ops.
  second = tf.clip_by_value(math.exp(p) * x, -1.0, 1.0)
  return tf.stack([first, second], axis=axis)
