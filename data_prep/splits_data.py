"""The split structure every dataset reader returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SplitData:
  """The images of one split, grouped by class.

  Attributes:
    images: uint8 array `[num_classes, images_per_class, H, W, C]`; may be a
      read-only memory map.
    class_names: one name per class, in the order of `images`.
  """
  images: np.ndarray
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return self.images.shape[0]

  @property
  def images_per_class(self) -> int:
    return self.images.shape[1]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[2:])
