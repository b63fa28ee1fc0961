"""Pure-numpy episode sampler with an injected random generator.

Classes are drawn without replacement from the split, images without
replacement from each class, and the classes are given the labels of a random
permutation of 0..way-1 in every episode. Support and query sets come in a
random order.
"""

import dataclasses

import numpy as np

from data_prep.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class EpisodeIndices:
  """Where an episode's images are: `(class, image)` index pairs and labels.

  Attributes:
    support_classes, support_images, support_labels: `[way * shot]` int arrays.
    query_classes, query_images, query_labels: `[way * queries]` int arrays.
  """
  support_classes: np.ndarray
  support_images: np.ndarray
  support_labels: np.ndarray
  query_classes: np.ndarray
  query_images: np.ndarray
  query_labels: np.ndarray


class EpisodeSampler:
  """Samples N-way, K-shot, Q-query episodes from a split.

  Args:
    num_classes: classes in the split.
    images_per_class: images in every class, or a sequence of each class's
      count for classes of unequal size (images are then drawn without
      replacement among a class's own).
    class_names: names for error messages.
    way, shot, queries: the episode's N, K and Q (queries per class).

  Raises:
    DatasetError: a non-positive size, more ways than classes, or fewer images
      per class than `shot + queries`.
  """

  def __init__(self, num_classes: int, images_per_class, way: int,
               shot: int, queries: int, class_names=None):
    for name, value in (("ways", way), ("shots", shot), ("queries", queries)):
      if int(value) != value or value <= 0:
        raise DatasetError(
            f"--{name} must be a positive whole number, got {value}. Set it "
            "to 1 or more (the Ravi & Larochelle protocol uses ways=5, "
            "shots=1 or 5, queries=15).")
    if way > num_classes:
      raise DatasetError(
          f"{way}-way episodes need {way} distinct classes but this split has "
          f"only {num_classes}. Lower --ways to at most {num_classes}.")
    sizes = (None if np.isscalar(images_per_class) else
             np.asarray(images_per_class, np.int64))
    if sizes is None and shot + queries > images_per_class:
      raise DatasetError(
          f"Each class has {images_per_class} images but an episode needs "
          f"shots + queries = {shot} + {queries} = {shot + queries} distinct "
          "images per class. Lower --shots or --queries so that their sum is "
          f"at most {images_per_class}.")
    if sizes is not None and (sizes < shot + queries).any():
      small = int(np.argmin(sizes))
      name = class_names[small] if class_names is not None else f"#{small}"
      raise DatasetError(
          f"Class {name} has {sizes[small]} images but an episode needs "
          f"shots + queries = {shot} + {queries} = {shot + queries} distinct "
          f"images per class. Lower --shots or --queries so that their sum is "
          f"at most {sizes.min()} (the smallest class).")
    self.num_classes = num_classes
    self.images_per_class = images_per_class
    self._sizes = sizes
    self.way, self.shot, self.queries = way, shot, queries

  def sample(self, rng: np.random.Generator) -> EpisodeIndices:
    """Draws one episode using (and advancing) `rng`."""
    classes = rng.choice(self.num_classes, size=self.way, replace=False)
    labels = rng.permutation(self.way)
    per_class = self.shot + self.queries
    images = np.stack([
        rng.choice(self.images_per_class if self._sizes is None else
                   self._sizes[c], size=per_class, replace=False)
        for c in classes
    ])  # [way, shot + queries]
    # Shuffled order, so that inner mini-batches smaller than the support
    # set are not grouped by class.
    s_order = rng.permutation(self.way * self.shot)
    q_order = rng.permutation(self.way * self.queries)

    def flat(values, n, order):
      return np.repeat(values, n)[order].astype(np.int64)

    return EpisodeIndices(
        support_classes=flat(classes, self.shot, s_order),
        support_images=images[:, :self.shot].reshape(-1)[s_order].astype(np.int64),
        support_labels=flat(labels, self.shot, s_order).astype(np.int32),
        query_classes=flat(classes, self.queries, q_order),
        query_images=images[:, self.shot:].reshape(-1)[q_order].astype(np.int64),
        query_labels=flat(labels, self.queries, q_order).astype(np.int32),
    )


def episode_rng(seed: int, episode_index: int) -> np.random.Generator:
  """The generator of episode `episode_index` of a stream seeded by `seed`.

  Every episode has its own generator, so a stream can restart at any episode
  (resumed training) and give exactly the episodes an uninterrupted run would.
  """
  return np.random.default_rng([int(seed), int(episode_index)])
