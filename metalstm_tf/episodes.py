"""The `Episode` structure: one few-shot task."""

from typing import NamedTuple

import tensorflow as tf


class Episode(NamedTuple):
  """A few-shot classification task (or a batch of them, leading axis B).

  Attributes:
    support_images: `[way * shot, H, W, C]` float32 in [0, 1].
    support_labels: `[way * shot]` int32 in 0..way-1.
    query_images: `[way * queries, H, W, C]` float32 in [0, 1].
    query_labels: `[way * queries]` int32 in 0..way-1.
  """
  support_images: tf.Tensor
  support_labels: tf.Tensor
  query_images: tf.Tensor
  query_labels: tf.Tensor
