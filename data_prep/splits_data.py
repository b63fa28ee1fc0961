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
    counts: for classes of unequal size (e.g. CUB), the number of images of
      each class; class `i` holds `images[i, :counts[i]]` and the rest of its
      row is padding. None: every class is full.
  """
  images: np.ndarray
  class_names: tuple[str, ...]
  counts: tuple[int, ...] | None = None

  def class_sizes(self) -> tuple[int, ...]:
    """Images of each class."""
    if self.counts is not None:
      return tuple(int(n) for n in self.counts)
    return (self.images_per_class,) * self.num_classes

  @property
  def num_classes(self) -> int:
    return self.images.shape[0]

  @property
  def images_per_class(self) -> int:
    """The row length of `images` (the largest class)."""
    return self.images.shape[1]

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[2:])
