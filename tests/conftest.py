"""Shared fixtures: the real data directory and small synthetic datasets
written in the official on-disk formats."""

import csv
import io
import os
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import metalstm_tf  # noqa: E402,F401  (before TensorFlow: its CPU-kernel setting)

REPO = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA = pathlib.Path(os.environ.get(
    "METALSTM_TEST_DATA", REPO.parent / "shared" / "datasets"))


def pytest_configure(config):
  """With `-n N` (pytest-xdist), a worker that has run out of tests takes
  half of another's queue ("worksteal") instead of the default's fixed
  chunks, so the slow tests, collected first, never leave one worker
  finishing alone. An explicit --dist is left as given."""
  explicit = any(a.startswith("--dist") for a in config.invocation_params.args)
  if getattr(config.option, "dist", None) == "load" and not explicit:
    config.option.dist = "worksteal"


def pytest_collection_modifyitems(config, items):
  """The tests marked slow run first (in their collected order): with
  `-n 2` the workers then finish on short tests, together, instead of one
  waiting for the other's minutes-long test at the end."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def real_data_dir():
  if not (REAL_DATA / "omniglot" / "images_background.zip").is_file():
    pytest.skip(f"real datasets not found at {REAL_DATA} "
                "(set METALSTM_TEST_DATA)")
  return REAL_DATA


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory):
  """One cache for the real data, reused by every test of the session."""
  return os.environ.get("METALSTM_TEST_CACHE") or str(
      tmp_path_factory.mktemp("cache"))


def _png(array: np.ndarray, mode: str) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).convert(mode).save(buf, format="PNG")
  return buf.getvalue()


def write_omniglot_zips(root: pathlib.Path, alphabets=2, characters=3,
                        seed=0) -> dict[str, np.ndarray]:
  """Writes `root/omniglot/images_{background,evaluation}.zip` in the official
  layout (105x105 1-bit PNGs, white background, black strokes).

  Returns `Alphabet/characterNN` -> `[20, 105, 105]` bool ink masks.
  """
  rng = np.random.default_rng(seed)
  out_dir = root / "omniglot"
  out_dir.mkdir(parents=True, exist_ok=True)
  masks = {}
  for z, zname in enumerate(("images_background", "images_evaluation")):
    with zipfile.ZipFile(out_dir / f"{zname}.zip", "w") as zf:
      for a in range(alphabets):
        alphabet = f"Alpha{z}{a}"
        for c in range(1, characters + 1):
          key = f"{alphabet}/character{c:02d}"
          ink = np.zeros((20, 105, 105), bool)
          for i in range(20):
            y, x = rng.integers(10, 70, size=2)
            ink[i, y:y + 25, x:x + 8] = True
            pixels = np.where(ink[i], 0, 255).astype(np.uint8)
            zf.writestr(f"{zname}/{key}/{1000 + c:04d}_{i + 1:02d}.png",
                        _png(pixels, "1"))
          masks[key] = ink
  return masks


def write_mini_imagenet(root: pathlib.Path, classes=(3, 2, 2), per_class=8,
                        as_zip=False, seed=0) -> pathlib.Path:
  """Writes `root/mini-imagenet/{train,val,test}.csv` and the images, as an
  `images/` folder or `images.zip` (84x84 RGB JPEGs, one flat colour per class)."""
  rng = np.random.default_rng(seed)
  out = root / "mini-imagenet"
  out.mkdir(parents=True, exist_ok=True)
  files = {}
  n = 0
  for split, count in zip(("train", "val", "test"), classes):
    with open(out / f"{split}.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["filename", "label"])
      for c in range(count):
        wnid = f"n{n:08d}"
        n += 1
        colour = rng.integers(0, 255, 3)
        for i in range(per_class):
          name = f"{wnid}{i:08d}.jpg"
          w.writerow([name, wnid])
          img = np.full((84, 84, 3), colour, np.uint8)
          buf = io.BytesIO()
          Image.fromarray(img).save(buf, format="JPEG", quality=95)
          files[name] = buf.getvalue()
  if as_zip:
    with zipfile.ZipFile(out / "images.zip", "w", zipfile.ZIP_STORED) as zf:
      for name, data in files.items():
        zf.writestr(f"images/{name}", data)
  else:
    (out / "images").mkdir(exist_ok=True)
    for name, data in files.items():
      (out / "images" / name).write_bytes(data)
  return out
