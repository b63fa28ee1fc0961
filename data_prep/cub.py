"""CUB-200-2011 (Wah et al. 2011, The Caltech-UCSD Birds-200-2011 Dataset)
from its official archive layout, with the split of Chen et al. 2019 (A
Closer Look at Few-shot Classification).

`<data_dir>/cub/` holds `CUB_200_2011.tgz` or the extracted
`CUB_200_2011/` with `images/`, `images.txt` and `classes.txt`. The 200
class folders sorted by name are split by index: i % 2 == 0 -> train (100
classes), i % 4 == 1 -> val (50), i % 4 == 3 -> test (50). Images become
84x84 RGB (`conventions.CUB`). Classes hold 41-60 images, so a split is a
padded `[classes, max images, 84, 84, 3]` array with each class's count
(`SplitData.counts`). There is no download: the archive is distributed by
Caltech under its own terms.
"""

import io
import pathlib
import tarfile

import numpy as np
from absl import logging
from PIL import Image

from data_prep import cache, conventions, paths
from data_prep.errors import DatasetError, read_member
from data_prep.splits_data import SplitData

ARCHIVE = "CUB_200_2011.tgz"
FOLDER = "CUB_200_2011"
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1


def split_of(index: int) -> str | None:
  """The split of the class at `index` in name order (Chen et al. 2019)."""
  if index % 2 == 0:
    return "train"
  return "val" if index % 4 == 1 else "test"


class _Source:
  """The extracted folder or the archive; `read_text(name)`, `images(wanted)`
  with names relative to `CUB_200_2011/`."""

  def __init__(self, root: pathlib.Path):
    self.folder, self.archive = root / FOLDER, root / ARCHIVE
    if self.folder.is_dir():
      self.kind = "folder"
      for name in ("images.txt", "classes.txt", "images"):
        if not (self.folder / name).exists():
          raise DatasetError(
              f"{self.folder / name} is missing; the CUB-200-2011 folder "
              "must hold images/, images.txt and classes.txt (extract the "
              f"official {ARCHIVE} there, or put the archive itself in "
              f"{root}).")
    elif self.archive.is_file():
      self.kind = "archive"
    else:
      raise DatasetError(
          f"CUB-200-2011 is not in {root}: put the official archive there "
          f"as {self.archive} (the file is called {ARCHIVE}), or its "
          f"extracted {self.folder}/ with images/, images.txt and "
          f"classes.txt. It is not downloaded automatically; set --data_dir "
          f"/ ${paths.DATA_DIR_ENV} to the directory holding cub/.")

  def fingerprint_paths(self) -> list[pathlib.Path]:
    if self.kind == "archive":
      return [self.archive]
    return [self.folder / "images.txt", self.folder / "classes.txt"]

  def read_text(self, name: str) -> str:
    if self.kind == "folder":
      path = self.folder / name
      if not path.is_file():
        raise DatasetError(f"{path} is missing; the CUB-200-2011 folder "
                           "must hold images/, images.txt and classes.txt.")
      return path.read_text()
    with tarfile.open(self.archive) as tar:
      try:
        member = tar.getmember(f"{FOLDER}/{name}")
      except KeyError:
        raise DatasetError(
            f"{self.archive} has no {FOLDER}/{name}; it is not the official "
            f"archive (which holds images/, images.txt and classes.txt).")
      return tar.extractfile(member).read().decode()

  def images(self, wanted: set[str]):
    """Yields (name, bytes) of the `images/<name>` files in `wanted`."""
    if self.kind == "folder":
      for name in sorted(wanted):
        path = self.folder / "images" / name
        if path.is_file():
          yield name, path.read_bytes()
      return
    prefix = f"{FOLDER}/images/"
    fix = "Download CUB_200_2011.tgz again, or extract it into cub/."
    with tarfile.open(self.archive) as tar:  # one sequential pass
      members = iter(tar)
      while True:
        member = read_member(lambda: next(members, None), self.archive,
                             "(the next one)", fix)
        if member is None:
          return
        name = member.name[len(prefix):]
        if member.isfile() and member.name.startswith(prefix) and \
            name in wanted:
          yield name, read_member(lambda: tar.extractfile(member).read(),
                                  self.archive, member.name, fix)


def _class_images(source: _Source) -> dict[str, list[str]]:
  """Class folder -> its image names (`folder/file.jpg`), from images.txt."""
  out: dict[str, list[str]] = {}
  for line in source.read_text("images.txt").splitlines():
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 2 or "/" not in parts[1]:
      raise DatasetError(f"Bad line in CUB images.txt: {line!r}; expected "
                         "'<id> <class folder>/<file>'.")
    out.setdefault(parts[1].split("/")[0], []).append(parts[1])
  if not out:
    raise DatasetError("CUB images.txt lists no images.")
  return dict(sorted(out.items()))


def _decode(data: bytes, where: str) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data)) as im:
      return conventions.convert(im, conventions.CUB)
  except Exception as e:  # PIL raises many types for corrupt data.
    raise DatasetError(f"Cannot decode CUB image {where} ({e}). Replace the "
                       "archive with an intact copy.") from e


def load_split(split: str, data_dir: str | None = None,
               cache_dir: str | None = None) -> SplitData:
  """One split: a padded `[classes, max images, 84, 84, 3]` uint8 memory
  map with each class's image count."""
  if split not in SPLITS:
    raise DatasetError(f"Unknown split {split!r}; use one of "
                       f"{', '.join(SPLITS)}.")
  source = _Source(paths.resolve_data_dir(data_dir) / "cub")
  fingerprint = [CACHE_VERSION, cache.fingerprint(source.fingerprint_paths())]
  cache_root = paths.resolve_cache_dir(cache_dir)
  name = f"cub_{split}_{conventions.CUB.height}"
  cached = cache.load(cache_root, name, fingerprint, mmap=True)
  if cached is not None:
    array, extra = cached
    return SplitData(array, tuple(extra["classes"]), tuple(extra["counts"]))
  by_class = _class_images(source)
  classes = [c for i, c in enumerate(by_class) if split_of(i) == split]
  files = {f: (c, j) for c, cls in enumerate(classes)
           for j, f in enumerate(by_class[cls])}
  counts = [len(by_class[c]) for c in classes]
  size = conventions.CUB.height

  def fill(out: np.ndarray) -> dict:
    logging.info("Building the CUB %s cache (%d images of %d classes)...",
                 split, len(files), len(classes))
    out[...] = 0
    found = set()
    for fname, data in source.images(set(files)):
      c, j = files[fname]
      out[c, j] = _decode(data, fname)
      found.add(fname)
    missing = sorted(set(files) - found)
    if missing:
      raise DatasetError(
          f"CUB images.txt names {len(missing)} images of the {split} split "
          f"that are not under images/ (first: {missing[0]}). The archive "
          "or folder is incomplete; use the official one.")
    return {"classes": classes, "counts": counts}

  array, extra = cache.build(
      cache_root, name, fingerprint,
      (len(classes), max(counts), size, size, 3), np.uint8, fill, mmap=True)
  return SplitData(array, tuple(extra["classes"]), tuple(extra["counts"]))
