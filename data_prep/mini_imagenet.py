"""mini-ImageNet in the Ravi & Larochelle layout.

Source layout:
  <data_dir>/mini-imagenet/{train,val,test}.csv    (filename,label)
  <data_dir>/mini-imagenet/images/<filename>       or
  <data_dir>/mini-imagenet/images.zip              (holding images/<filename>)
Each split is cached as a memory-mapped uint8 array `[C, 600, 84, 84, 3]`, so
training reads pages on demand instead of holding the split in RAM.
"""

import csv
import io
import pathlib
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from data_prep import cache, conventions, paths
from data_prep.errors import DatasetError, read_member
from data_prep.splits_data import SplitData

IMAGE_SIZE = conventions.MINI_IMAGENET.height
SPLITS = ("train", "val", "test")


def _read_csv(path: pathlib.Path) -> dict[str, list[str]]:
  """label -> file names, in file order."""
  if not path.is_file():
    raise DatasetError(
        f"Missing {path}. mini-ImageNet needs train.csv, val.csv and test.csv "
        "(Ravi & Larochelle split, 'filename,label') plus an images/ folder "
        "or images.zip in the same directory; point --data_dir (or "
        f"${paths.DATA_DIR_ENV}) at the directory that holds mini-imagenet/.")
  classes: dict[str, list[str]] = {}
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header != ["filename", "label"]:
      raise DatasetError(
          f"{path} must start with the header 'filename,label', found "
          f"{header!r}. Use the Ravi & Larochelle split files.")
    for n, row in enumerate(reader, start=2):
      if len(row) != 2:
        raise DatasetError(f"{path}, line {n}: expected 'filename,label', "
                           f"got {row!r}.")
      classes.setdefault(row[1], []).append(row[0])
  if not classes:
    raise DatasetError(f"{path} lists no images.")
  counts = {len(v) for v in classes.values()}
  if len(counts) != 1:
    raise DatasetError(
        f"{path}: classes have different numbers of images ({sorted(counts)});"
        " every class of a split must have the same number.")
  return classes


class _ImageSource:
  """Reads image bytes from an `images/` folder or from `images.zip`."""

  def __init__(self, root: pathlib.Path):
    self.folder = root / "images"
    self.zip_path = root / "images.zip"
    self._zip = None
    if self.folder.is_dir():
      self.kind = "folder"
    elif self.zip_path.is_file():
      self.kind = "zip"
      try:
        self._zip = zipfile.ZipFile(self.zip_path)
      except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(
            f"{self.zip_path} is not a readable zip file ({e}). Replace it "
            "with a complete copy, or extract it into an images/ folder.") from e
      self._names = set(self._zip.namelist())
    else:
      raise DatasetError(
          f"mini-ImageNet images not found: neither {self.folder}/ nor "
          f"{self.zip_path} exists. Put the 60,000 Ravi images there.")

  def fingerprint_paths(self) -> list[pathlib.Path]:
    return [self.zip_path] if self.kind == "zip" else [self.folder]

  def missing(self, filenames: list[str]) -> list[str]:
    if self.kind == "zip":
      return [f for f in filenames if f"images/{f}" not in self._names]
    return [f for f in filenames if not (self.folder / f).is_file()]

  def read(self, filename: str) -> bytes:
    if self.kind == "zip":
      return read_member(
          lambda: self._zip.read(f"images/{filename}"), self.zip_path,
          f"images/{filename}", "Replace it with a complete copy, or "
          "extract it into an images/ folder.")
    return read_member(lambda: (self.folder / filename).read_bytes(),
                       self.folder, filename,
                       "Replace the file with a good copy.")

  def close(self):
    if self._zip is not None:
      self._zip.close()


def _decode(data: bytes, where: str) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data)) as im:
      return conventions.convert(im, conventions.MINI_IMAGENET)
  except Exception as e:  # PIL raises many types for corrupt data.
    raise DatasetError(
        f"Cannot decode mini-ImageNet image {where} ({e}). Replace the file "
        "with an intact copy.") from e


def load_split(split: str, data_dir: str | None = None,
               cache_dir: str | None = None) -> SplitData:
  """One split as a memory-mapped `[C, 600, 84, 84, 3]` uint8 array."""
  if split not in SPLITS:
    raise DatasetError(f"Unknown mini-ImageNet split {split!r}; use one of "
                       f"{', '.join(SPLITS)}.")
  root = paths.resolve_data_dir(data_dir) / "mini-imagenet"
  csv_path = root / f"{split}.csv"
  classes = _read_csv(csv_path)
  source = _ImageSource(root)
  try:
    fp_paths = [csv_path] + source.fingerprint_paths()
    fingerprint = cache.fingerprint(fp_paths)
    cache_root = paths.resolve_cache_dir(cache_dir)
    name = f"mini_imagenet_{split}_{IMAGE_SIZE}"
    cached = cache.load(cache_root, name, fingerprint, mmap=True)
    if cached is not None:
      array, extra = cached
      return SplitData(images=array, class_names=tuple(extra["labels"]))
    labels = sorted(classes)
    files = [f for lab in labels for f in classes[lab]]
    missing = source.missing(files)
    if missing:
      raise DatasetError(
          f"{csv_path} names {len(missing)} images that are not in "
          f"{source.fingerprint_paths()[0]} (first: {missing[0]}). Use the "
          "image set that matches the CSV files, or fix the CSV.")
    per_class = len(classes[labels[0]])

    def fill(out: np.ndarray) -> dict:
      logging.info("Building the mini-ImageNet %s cache (%d images)...", split,
                   len(files))
      for c, lab in enumerate(labels):
        for i, fname in enumerate(classes[lab]):
          out[c, i] = _decode(source.read(fname), fname)
        if (c + 1) % 4 == 0 or c + 1 == len(labels):
          logging.info("  mini-ImageNet %s cache: %d/%d classes (%.0f%%)",
                       split, c + 1, len(labels), 100.0 * (c + 1) / len(labels))
      return {"labels": labels}

    array, extra = cache.build(
        cache_root, name, fingerprint,
        (len(labels), per_class, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8, fill,
        mmap=True)
    return SplitData(images=array, class_names=tuple(extra["labels"]))
  finally:
    source.close()
