"""The tf.data episode pipeline and augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from data_prep.splits_data import SplitData
from metalstm_tf import augment, pipeline, tasks
from metalstm_tf.config import TrainConfig


def _split(channels=3, size=32, classes=12, per_class=20, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (classes, per_class, size, size, channels),
                        dtype=np.uint8)
  return SplitData(images=images, class_names=tuple(map(str, range(classes))))


def _numpy(ds):
  return [tf.nest.map_structure(lambda t: t.numpy(), e) for e in ds]


def test_shapes_dtypes_and_labels():
  ds = pipeline.episode_dataset(_split(), way=5, shot=2, queries=3, seed=0,
                                num_episodes=4, batch_size=2)
  batches = _numpy(ds)
  assert len(batches) == 2
  e = batches[0]
  assert e.support_images.shape == (2, 10, 32, 32, 3)
  assert e.support_images.dtype == np.float32
  assert e.support_labels.shape == (2, 10) and e.support_labels.dtype == np.int32
  assert e.query_images.shape == (2, 15, 32, 32, 3)
  assert 0.0 <= e.query_images.min() and e.query_images.max() <= 1.0
  assert sorted(np.unique(e.query_labels[0])) == list(range(5))


def test_images_match_their_labels():
  split = _split()
  e = _numpy(pipeline.episode_dataset(split, 5, 1, 2, seed=1,
                                      num_episodes=1))[0]
  # Every query image comes from the class of the support image with its label.
  flat = split.images.reshape(-1, *split.image_shape).astype(np.float32) / 255
  def cls(img):
    return int(np.argmin(np.abs(flat - img).sum(axis=(1, 2, 3)))) // 20
  for img, lab in zip(e.query_images, e.query_labels):
    s = e.support_images[list(e.support_labels).index(lab)]
    assert cls(img) == cls(s)


def test_reproducible_and_resumable():
  split = _split()
  a = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=7, num_episodes=6,
                                      augment=True))
  b = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=7, num_episodes=6,
                                      augment=True))
  tail = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=7, start=4,
                                         num_episodes=2, augment=True))
  other = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=8,
                                          num_episodes=1, augment=True))
  for x, y in zip(a, b):
    for f in x._fields:
      np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
  for x, y in zip(a[4:], tail):
    np.testing.assert_array_equal(x.query_images, y.query_images)
  assert not np.array_equal(a[0].query_images, other[0].query_images)


@pytest.mark.parametrize("channels", [1, 3])
def test_augmentation_changes_pixels_keeps_shape_dtype_range(channels):
  split = _split(channels=channels)
  plain = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=3,
                                          num_episodes=2))
  aug = _numpy(pipeline.episode_dataset(split, 5, 1, 3, seed=3,
                                        num_episodes=2, augment=True))
  for p, a in zip(plain, aug):
    np.testing.assert_array_equal(p.query_labels, a.query_labels)
    assert a.query_images.shape == p.query_images.shape
    assert a.query_images.dtype == np.float32
    assert a.query_images.min() >= 0.0 and a.query_images.max() <= 1.0
    # Each image is changed.
    diff = np.abs(a.query_images - p.query_images).mean(axis=(1, 2, 3))
    assert (diff > 1e-3).all()


def test_color_jitter_is_per_image_and_identity_at_zero_strength():
  x = tf.random.uniform([6, 16, 16, 3], seed=1)
  seed = tf.constant([1, 2], tf.int64)
  none = augment.AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
  np.testing.assert_allclose(augment.color_jitter(x, seed, none), x, atol=1e-5)
  same = tf.repeat(x[:1], 6, axis=0)
  out = augment.color_jitter(same, seed).numpy()
  assert np.abs(out[0] - out[1]).max() > 1e-3  # different parameters per image


def test_augmentation_only_for_training_episodes():
  splits = {s: _split(seed=i) for i, s in enumerate(("train", "val", "test"))}
  cfg = TrainConfig(dataset="mini_imagenet", augment=True, shot=1, queries=3)
  task = tasks.image_task(splits, cfg)
  for split in ("val", "test"):
    ev = _numpy(task.eval_dataset(split, 1))[0]
    # Unaugmented images are exact multiples of 1/255.
    np.testing.assert_allclose(ev.query_images * 255,
                               np.round(ev.query_images * 255), atol=1e-3)
  tr = _numpy(task.train_dataset(0).take(1))[0]
  scaled = tr.query_images * 255
  assert np.abs(scaled - np.round(scaled)).max() > 1e-2


def test_streams_run_without_autotuning():
  """Deleting an autotuned iterator can wait for its tuning thread's timer
  (seconds, idle), and every evaluation and every end of training deletes
  one: no stream autotunes."""
  splits = {s: _split(seed=i) for i, s in enumerate(("train", "val", "test"))}
  cfg = TrainConfig(dataset="mini_imagenet", shot=1, queries=3)
  task = tasks.image_task(splits, cfg)
  for split in ("train", "val", "test"):
    assert task.eval_dataset(split, 2).options().autotune.enabled is False
  assert task.train_dataset(0).options().autotune.enabled is False
  # The values do not depend on it.
  stream = pipeline.episode_dataset(splits["val"], 5, 1, 3, seed=7,
                                    num_episodes=2)
  options = tf.data.Options()
  options.autotune.enabled = True
  tuned = stream.with_options(options)
  assert tuned.options().autotune.enabled
  for a, b in zip(_numpy(tuned), _numpy(stream), strict=True):
    np.testing.assert_array_equal(a.support_images, b.support_images)
    np.testing.assert_array_equal(a.query_images, b.query_images)
    np.testing.assert_array_equal(a.query_labels, b.query_labels)


def test_training_class_evaluation_is_fixed_unaugmented_and_its_own():
  """eval_dataset('train', n): the same episodes every time, the training
  split's pixels exactly (no augmentation even when training augments),
  and episodes other than the validation stream's."""
  splits = {s: _split(seed=i) for i, s in enumerate(("train", "val", "test"))}
  cfg = TrainConfig(dataset="mini_imagenet", augment=True, shot=1, queries=3)
  task = tasks.image_task(splits, cfg)
  first, again = (_numpy(task.eval_dataset("train", 2)) for _ in range(2))
  images = splits["train"].images
  train_images = {im.tobytes() for im in images.reshape(-1, *images.shape[2:])}
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a.support_images, b.support_images)
    np.testing.assert_array_equal(a.query_images, b.query_images)
    for image in np.concatenate([a.support_images, a.query_images]):
      pixels = np.round(image * 255).astype(np.uint8)
      assert pixels.tobytes() in train_images
  # The same split read as 'val' would draw other classes and images.
  as_val = tasks.image_task({"train": splits["train"], "val": splits["train"],
                             "test": splits["test"]}, cfg)
  other = _numpy(as_val.eval_dataset("val", 1))[0]
  assert not np.array_equal(other.support_images, first[0].support_images)


def test_memory_mapped_images_are_read_without_mapping_them(tmp_path):
  """A cache's memory-mapped array is read image by image with pread (its
  pages do not become resident memory of the process): the same episodes
  as from the array in memory."""
  from data_prep import cache
  rng = np.random.default_rng(0)
  data = rng.integers(0, 256, (6, 10, 8, 8, 3), dtype=np.uint8)
  mapped, _ = cache.build(tmp_path, "x", [["f", 1, 1]], data.shape, np.uint8,
                          lambda a: a.__setitem__(Ellipsis, data), mmap=True)
  assert isinstance(mapped, np.memmap)
  assert pipeline.image_reader(mapped).__name__ == "by_pread"
  assert pipeline.image_reader(data).__name__ == "by_index"
  assert pipeline.image_reader(mapped[1:]).__name__ == "by_index"  # a view
  streams = []
  for images in (mapped, data):
    split = SplitData(images=images, class_names=tuple(map(str, range(6))))
    streams.append(list(pipeline.episode_dataset(split, 3, 2, 3, seed=1,
                                                 num_episodes=4)))
  for a, b in zip(*streams):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x.numpy(), y.numpy())
