"""Dataset preparation: readers of the official files, caches, split lists."""

from data_prep.errors import DatasetError
from data_prep.splits_data import SplitData

DATASETS = ("omniglot", "mini_imagenet", "cub")


def load_split(dataset: str, split: str, data_dir: str | None = None,
               cache_dir: str | None = None) -> SplitData:
  """Loads `split` ('train', 'val' or 'test') of an image dataset."""
  if dataset == "omniglot":
    from data_prep import omniglot
    return omniglot.load_split(split, data_dir, cache_dir)
  if dataset == "mini_imagenet":
    from data_prep import mini_imagenet
    return mini_imagenet.load_split(split, data_dir, cache_dir)
  if dataset == "cub":
    from data_prep import cub
    return cub.load_split(split, data_dir, cache_dir)
  raise DatasetError(f"Unknown image dataset {dataset!r}; use one of "
                     f"{', '.join(DATASETS)}.")


def load_splits(dataset: str, data_dir: str | None = None,
                cache_dir: str | None = None, image_shape=None,
                splits=("train", "val", "test")) -> dict[str, SplitData]:
  """The splits `splits` (default all three); Omniglot's characters are
  read once for all. `image_shape` (H, W, C): images adapted to that shape
  (`data_prep.adapt`; None: the dataset's own)."""
  if dataset == "omniglot":
    from data_prep import omniglot
    chars = omniglot.load_characters(data_dir, cache_dir)
    out = {s: omniglot.load_split(s, characters=chars) for s in splits}
  else:
    out = {s: load_split(dataset, s, data_dir, cache_dir) for s in splits}
  if image_shape is not None:
    from data_prep import adapt
    out = {s: adapt.adapt_split(d, image_shape, f"{dataset}_{s}", cache_dir)
           for s, d in out.items()}
  return out


def native_shape(dataset: str) -> tuple[int, int, int]:
  """(H, W, C) of `dataset`'s images as its reader stores them."""
  from data_prep import conventions
  if dataset not in conventions.BY_DATASET:
    raise DatasetError(f"Unknown image dataset {dataset!r}; use one of "
                       f"{', '.join(DATASETS)}.")
  return conventions.BY_DATASET[dataset].shape
