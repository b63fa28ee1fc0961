"""The input adapter: a dataset's images at another size or channel count.

Used to train on a dataset at another shape (`--image_size`, `--channels`,
e.g. Omniglot at 84x84x3) and to test a trained learner on another dataset
(`--test_dataset`). The conversion, in this order:

1. channels: RGB -> grayscale by luminance (ITU-R 601-2: L = 0.299 R +
   0.587 G + 0.114 B, PIL's "L"); grayscale -> RGB by replicating the
   channel;
2. size: area resize (PIL's box filter: each output pixel is the mean of
   the input pixels it covers; when enlarging, each input pixel is repeated).

Polarity is kept as the dataset stores it (Omniglot: strokes 255 on 0).
Adapted splits are cached, one array per (dataset, split, size, channels),
keyed by a hash of the source array's bytes.
"""

import zlib

import numpy as np
from absl import logging
from PIL import Image

from data_prep import cache, paths
from data_prep.splits_data import SplitData

ADAPTER_VERSION = 1


def describe(source_shape, target_shape) -> str:
  """The conversion from `source_shape` to `target_shape` (H, W, C), in
  words without spaces, e.g. 'luminance,area_84x84_to_28x28'; 'none'."""
  (h, w, c), (th, tw, tc) = source_shape, target_shape
  steps = []
  if c != tc:
    steps.append("luminance" if tc == 1 else "replicate_channels")
  if (h, w) != (th, tw):
    steps.append(f"area_{h}x{w}_to_{th}x{tw}")
  return ",".join(steps) or "none"


def adapt_image(image: np.ndarray, shape) -> np.ndarray:
  """One `[H, W, C]` uint8 image -> `shape` (H', W', C') uint8."""
  th, tw, tc = shape
  c = image.shape[-1]
  if c not in (1, 3) or tc not in (1, 3):
    raise ValueError(f"Channel counts must be 1 or 3, got {c} -> {tc}.")
  pil = Image.fromarray(image[..., 0] if c == 1 else image)
  if c == 3 and tc == 1:
    pil = pil.convert("L")
  if pil.size != (tw, th):
    pil = pil.resize((tw, th), Image.Resampling.BOX)
  out = np.asarray(pil, dtype=np.uint8)
  if out.ndim == 2:
    out = out[..., None]
  if out.shape[-1] == 1 and tc == 3:
    out = np.repeat(out, 3, axis=-1)
  return out


def _content_key(array: np.ndarray) -> int:
  """A CRC-32 of the array's bytes, read in slices (memory maps stay maps)."""
  crc = 0
  flat = array.reshape(array.shape[0], -1)
  for i in range(flat.shape[0]):
    crc = zlib.crc32(np.ascontiguousarray(flat[i]).data, crc)
  return crc


def adapt_split(split: SplitData, shape, name: str,
                cache_dir: str | None = None) -> SplitData:
  """`split` with every image adapted to `shape` (itself if it has it).

  Args:
    name: cache name prefix, e.g. 'omniglot_test'.
    cache_dir: cache directory (default: the user's).
  """
  shape = tuple(int(d) for d in shape)
  if split.image_shape == shape:
    return split
  h, w, c = shape
  key = [ADAPTER_VERSION, list(split.images.shape), _content_key(split.images),
         list(split.class_names)]
  classes, per_class = split.images.shape[:2]

  def fill(out: np.ndarray) -> dict:
    logging.info("Adapting %s (%d images) from %s to %s: %s.", name,
                 classes * per_class, "x".join(map(str, split.image_shape)),
                 "x".join(map(str, shape)),
                 describe(split.image_shape, shape))
    for i in range(classes):
      for j in range(per_class):
        out[i, j] = adapt_image(np.asarray(split.images[i, j]), shape)
    return {}

  array, _ = cache.load_or_build(
      paths.resolve_cache_dir(cache_dir), f"{name}_{h}x{w}x{c}", key,
      (classes, per_class, h, w, c), np.uint8, fill, mmap=True)
  return SplitData(images=array, class_names=split.class_names,
                   counts=split.counts)
