"""Dataset preparation: readers of the official files, caches, split lists."""

from data_prep.errors import DatasetError
from data_prep.splits_data import SplitData

DATASETS = ("omniglot", "mini_imagenet")


def load_split(dataset: str, split: str, data_dir: str | None = None,
               cache_dir: str | None = None) -> SplitData:
  """Loads `split` ('train', 'val' or 'test') of an image dataset."""
  if dataset == "omniglot":
    from data_prep import omniglot
    return omniglot.load_split(split, data_dir, cache_dir)
  if dataset == "mini_imagenet":
    from data_prep import mini_imagenet
    return mini_imagenet.load_split(split, data_dir, cache_dir)
  raise DatasetError(f"Unknown image dataset {dataset!r}; use one of "
                     f"{', '.join(DATASETS)}.")


def load_splits(dataset: str, data_dir: str | None = None,
                cache_dir: str | None = None) -> dict[str, SplitData]:
  """All three splits; Omniglot's characters are read once for all three."""
  if dataset == "omniglot":
    from data_prep import omniglot
    chars = omniglot.load_characters(data_dir, cache_dir)
    return {s: omniglot.load_split(s, characters=chars)
            for s in omniglot.SPLITS}
  return {s: load_split(dataset, s, data_dir, cache_dir)
          for s in ("train", "val", "test")}
