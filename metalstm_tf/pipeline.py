"""tf.data assembly of episodes: numpy sampling -> gather -> augment -> batch.

Episode `i` of a stream is a pure function of `(seed, i)`: the sampler gets the
generator `episode_rng(seed, i)` and augmentation the stateless seed
`(seed, i)`. A stream can therefore start at any episode (resumed training)
and reproduces exactly, whatever the parallelism.
"""

import os
import weakref

import numpy as np
import tensorflow as tf

from data_prep.splits_data import SplitData
from metalstm_tf import augment as augment_lib
from metalstm_tf.episodes import Episode
from metalstm_tf.sampling import EpisodeSampler, episode_rng


def episode_dataset(split: SplitData, way: int, shot: int, queries: int,
                    seed: int, start: int = 0, num_episodes: int | None = None,
                    augment: bool = False,
                    augment_config: augment_lib.AugmentConfig = augment_lib.AugmentConfig(),
                    batch_size: int | None = None,
                    prefetch: int = 4) -> tf.data.Dataset:
  """A dataset of `Episode`s of float32 images in [0, 1].

  Args:
    split: the images, `[classes, images_per_class, H, W, C]` uint8.
    way, shot, queries: N-way K-shot episodes with `queries` per class.
    seed: stream seed.
    start: index of the first episode (for resuming).
    num_episodes: how many episodes; None for an endless stream.
    augment: apply `augment_lib.augment` to every image (training only).
    batch_size: if set, episodes are batched into `[batch_size, ...]`.
    prefetch: batches prepared ahead of the consumer.
  """
  sampler = episode_sampler(split, way, shot, queries)
  read = image_reader(split.images)
  h, w, c = split.image_shape

  def gather(index):
    e = sampler.sample(episode_rng(seed, int(index)))
    return (read(e.support_classes, e.support_images), e.support_labels,
            read(e.query_classes, e.query_images), e.query_labels)

  def load(index):
    s_img, s_lab, q_img, q_lab = tf.numpy_function(
        gather, [index], [tf.uint8, tf.int32, tf.uint8, tf.int32],
        stateful=False)
    n_s, n_q = way * shot, way * queries
    s_img = tf.ensure_shape(s_img, [n_s, h, w, c])
    q_img = tf.ensure_shape(q_img, [n_q, h, w, c])
    x = tf.cast(tf.concat([s_img, q_img], axis=0), tf.float32) / 255.0
    if augment:
      x = augment_lib.augment(
          x, tf.stack([tf.constant(seed, tf.int64), index]), augment_config)
    return Episode(x[:n_s], tf.ensure_shape(s_lab, [n_s]), x[n_s:],
                   tf.ensure_shape(q_lab, [n_q]))

  return indexed_stream(load, start, num_episodes, batch_size, prefetch)


def image_reader(images: np.ndarray):
  """`read(classes, indices)`: the images `images[classes, indices]`, a new
  contiguous array.

  For an array memory-mapped from its file (the dataset caches), each image
  is read with `os.pread` instead: the same bytes, but the file's pages stay
  in the system's page cache instead of becoming resident memory of this
  process (mini-ImageNet's arrays would otherwise add up to 1.3 GB to it).
  """
  def by_index(classes, indices):
    return np.ascontiguousarray(images[classes, indices])

  mapped = getattr(images, "_mmap", None)
  if (not isinstance(images, np.memmap) or images.base is not mapped or
      mapped is None or not images.flags.c_contiguous or images.ndim < 2 or
      not images.filename):
    return by_index
  fd = os.open(images.filename, os.O_RDONLY)
  per_image = images[0, 0].nbytes
  per_class = images.shape[1]
  start = images.offset

  def by_pread(classes, indices):
    out = np.empty((len(classes),) + images.shape[2:], images.dtype)
    flat = out.reshape(len(classes), -1).view(np.uint8)
    for k, (c, i) in enumerate(zip(classes, indices)):
      offset = start + (int(c) * per_class + int(i)) * per_image
      flat[k] = np.frombuffer(os.pread(fd, per_image, offset), np.uint8)
    return out

  weakref.finalize(by_pread, os.close, fd)
  probe = ([0, images.shape[0] - 1], [0, per_class - 1])
  if not np.array_equal(by_pread(*probe), by_index(*probe)):
    return by_index  # (an unexpected layout: index the map instead)
  return by_pread


def episode_sampler(split: SplitData, way: int, shot: int,
                    queries: int) -> EpisodeSampler:
  """The sampler of `split`: its class sizes (unequal ones too) and names
  (for error messages)."""
  sizes = (split.images_per_class if split.counts is None else
           split.class_sizes())
  return EpisodeSampler(split.num_classes, sizes, way, shot, queries,
                        split.class_names)


def indexed_stream(load, start: int = 0, num_episodes: int | None = None,
                   batch_size: int | None = None,
                   prefetch: int = 4) -> tf.data.Dataset:
  """`load(index)` for episode indices `start, start + 1, ...`, in order.

  Args:
    load: int64 scalar tensor -> an episode structure (pure in the index).
    start: first index (for resuming).
    num_episodes: how many; None for an endless stream.
    batch_size: if set, episodes are batched into `[batch_size, ...]`.
    prefetch: batches prepared ahead of the consumer.

  The stream runs without tf.data's autotuning (the same episodes per second
  here: RESULTS.md, "Speed"). Deleting an autotuned iterator waits, idle, for
  its tuning thread's timer, whose period grows with the iterator's age: 17 s
  at the end of a 100-episode mini-ImageNet validation that computes for
  24 s, 60 s between a stop signal and the checkpoint of a run that had
  trained for 50 minutes; and every evaluation makes and deletes one. The
  map runs at tf.data's default parallelism instead.
  """
  stop = (np.iinfo(np.int64).max if num_episodes is None else
          start + num_episodes)
  ds = tf.data.Dataset.range(start, stop).map(
      load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if batch_size:
    ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.prefetch(prefetch).with_options(options)
