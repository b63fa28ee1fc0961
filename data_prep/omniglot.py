"""Omniglot from the official zips, Vinyals split with rotations.

Source layout (github.com/brendenlake/omniglot, `python/*.zip`):
  <data_dir>/omniglot/images_background.zip
  <data_dir>/omniglot/images_evaluation.zip
each holding `images_<set>/<Alphabet>/characterNN/IIII_DD.png` (105x105,
1-bit, white background). The cache holds every character once as
`[1623, 20, 28, 28]` uint8 with strokes = 255 on a 0 background; a split adds
the rotations named in its list (`Alphabet/characterNN/rotDDD`).
"""

import importlib.resources
import io
import pathlib
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from data_prep import cache, conventions, paths
from data_prep.errors import DatasetError, read_member
from data_prep.splits_data import SplitData

ZIP_URLS = {
    "images_background.zip":
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
    "images_evaluation.zip":
        "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
}
IMAGE_SIZE = conventions.OMNIGLOT.height
IMAGES_PER_CHARACTER = 20
SPLITS = ("train", "val", "test")
CACHE_NAME = f"omniglot_{IMAGE_SIZE}"


def read_split_list(split: str) -> list[str]:
  """Class names `Alphabet/characterNN/rotDDD` of a Vinyals split."""
  if split not in SPLITS + ("trainval",):
    raise DatasetError(f"Unknown Omniglot split {split!r}; use one of "
                       f"{', '.join(SPLITS + ('trainval',))}.")
  text = importlib.resources.files("data_prep").joinpath(
      f"splits/vinyals/{split}.txt").read_text()
  return [line.strip() for line in text.splitlines() if line.strip()]


def _open_zip(path: pathlib.Path) -> zipfile.ZipFile:
  try:
    return zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise DatasetError(
        f"{path} is not a readable zip file ({e}). Delete it and run again "
        "to download it afresh, or replace it with the official file from "
        f"{ZIP_URLS.get(path.name, 'the official Omniglot repository')}.") from e


def _list_characters(zips: list[pathlib.Path]) -> dict[str, tuple[pathlib.Path, list[str]]]:
  """Maps `Alphabet/characterNN` -> (zip path, sorted member names)."""
  characters: dict[str, tuple[pathlib.Path, list[str]]] = {}
  for zpath in zips:
    with _open_zip(zpath) as zf:
      for member in zf.namelist():
        parts = member.split("/")
        if len(parts) != 4 or not parts[3].endswith(".png"):
          continue
        key = f"{parts[1]}/{parts[2]}"
        characters.setdefault(key, (zpath, []))[1].append(member)
  if not characters:
    raise DatasetError(
        f"No Omniglot images found in {', '.join(map(str, zips))}. The zips "
        "must hold images_<set>/<Alphabet>/characterNN/*.png as the official "
        "files do.")
  for key, (zpath, members) in characters.items():
    members.sort()
    if len(members) != IMAGES_PER_CHARACTER:
      raise DatasetError(
          f"Omniglot character {key} in {zpath} has {len(members)} images, "
          f"expected {IMAGES_PER_CHARACTER}. The zip is incomplete or "
          "modified; replace it with the official file.")
  return dict(sorted(characters.items()))


def _decode(data: bytes, where: str) -> np.ndarray:
  """A 105x105 1-bit PNG -> 28x28 uint8, strokes 255 on 0."""
  try:
    with Image.open(io.BytesIO(data)) as im:
      return conventions.convert(im, conventions.OMNIGLOT)[..., 0]
  except Exception as e:  # PIL raises many types for corrupt data.
    raise DatasetError(
        f"Cannot decode Omniglot image {where} ({e}). The zip is corrupt; "
        "delete it and run again to download it afresh.") from e


def load_characters(data_dir: str | None = None, cache_dir: str | None = None,
                    download: bool = True) -> tuple[np.ndarray, list[str]]:
  """All 1,623 characters: `[1623, 20, 28, 28]` uint8 and their names."""
  root = paths.resolve_data_dir(data_dir) / "omniglot"
  if download:
    paths.ensure_files(root, ZIP_URLS, "omniglot")
  zips = [root / name for name in ZIP_URLS]
  for z in zips:
    if not z.is_file():
      raise DatasetError(
          f"Missing {z}. Download it from {ZIP_URLS[z.name]} or set "
          f"--data_dir / ${paths.DATA_DIR_ENV} to a directory holding "
          "omniglot/images_background.zip and omniglot/images_evaluation.zip.")
  source = cache.fingerprint(zips)
  cache_root = paths.resolve_cache_dir(cache_dir)
  cached = cache.load(cache_root, CACHE_NAME, source)
  if cached is not None:
    array, extra = cached
    return np.asarray(array), extra["names"]
  characters = _list_characters(zips)
  names = list(characters)

  def fill(out: np.ndarray) -> dict:
    logging.info("Building the Omniglot cache from %s (%d characters)...",
                 root, len(names))
    open_zips = {z: _open_zip(z) for z in zips}
    try:
      for i, name in enumerate(names):
        zpath, members = characters[name]
        for j, member in enumerate(members):
          data = read_member(
              lambda: open_zips[zpath].read(member), zpath, member,
              "Delete it and run again to download it afresh, or replace "
              "it with the official file from "
              f"{ZIP_URLS.get(zpath.name, 'the Omniglot repository')}.")
          out[i, j] = _decode(data, f"{zpath.name}:{member}")
        if (i + 1) % 200 == 0 or i + 1 == len(names):
          logging.info("  Omniglot cache: %d/%d characters (%.0f%%)", i + 1,
                       len(names), 100.0 * (i + 1) / len(names))
    finally:
      for zf in open_zips.values():
        zf.close()
    return {"names": names}

  array, extra = cache.build(
      cache_root, CACHE_NAME, source,
      (len(names), IMAGES_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE), np.uint8,
      fill)
  return np.asarray(array), extra["names"]


def load_split(split: str, data_dir: str | None = None,
               cache_dir: str | None = None, download: bool = True,
               characters: tuple[np.ndarray, list[str]] | None = None,
               classes: list[str] | None = None) -> SplitData:
  """One split, each rotation a class: `[C, 20, 28, 28, 1]` uint8.

  Args:
    split: 'train', 'val', 'test' or 'trainval' of the Vinyals split.
    characters: already loaded `load_characters()` output, to share it.
    classes: explicit `Alphabet/characterNN/rotDDD` list instead of the
      Vinyals one (other splits, small tests).
  """
  array, names = characters or load_characters(data_dir, cache_dir, download)
  index = {n: i for i, n in enumerate(names)}
  classes = read_split_list(split) if classes is None else list(classes)
  out = np.empty((len(classes), IMAGES_PER_CHARACTER, IMAGE_SIZE, IMAGE_SIZE,
                  1), np.uint8)
  for c, cls in enumerate(classes):
    char, _, rot = cls.rpartition("/")
    if char not in index:
      raise DatasetError(
          f"The Vinyals split lists {char}, which is not in the Omniglot zips. "
          "The zips are incomplete; replace them with the official files.")
    if not (rot.startswith("rot") and rot[3:].isdigit() and
            int(rot[3:]) % 90 == 0):
      raise DatasetError(f"Bad rotation {rot!r} in split list entry {cls}.")
    out[c, ..., 0] = np.rot90(array[index[char]], k=int(rot[3:]) // 90,
                              axes=(1, 2))
  return SplitData(images=out, class_names=tuple(classes))
