"""Dataset readers on synthetic data in the official formats, and on the real
data in ../shared/datasets."""

import json
import os
import subprocess
import sys
import urllib.error
import zipfile

import numpy as np
import pytest

from conftest import REPO, write_mini_imagenet, write_omniglot_zips
from data_prep import DatasetError, cache, mini_imagenet, omniglot, paths


@pytest.fixture
def no_network(monkeypatch):
  def fail(url, dest, timeout=30.0):
    raise urllib.error.URLError("no network (test)")
  monkeypatch.setattr(paths, "download", fail)


def test_omniglot_zips_are_read_resized_and_inverted(tmp_path):
  masks = write_omniglot_zips(tmp_path / "data")
  array, names = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  assert array.shape == (12, 20, 28, 28) and array.dtype == np.uint8
  assert names == sorted(masks)
  key = names[0]
  img = array[0, 0].astype(np.float32) / 255
  # Strokes become ~1 and the background exactly 0.
  assert img.max() > 0.9 and np.median(img) == 0.0
  ys, xs = np.nonzero(masks[key][0])
  assert img[int(ys.mean() * 28 / 105), int(xs.mean() * 28 / 105)] > 0.5


def test_omniglot_split_with_rotations(tmp_path):
  write_omniglot_zips(tmp_path / "data")
  classes = ["Alpha00/character01/rot000", "Alpha00/character01/rot090"]
  split = omniglot.load_split("train", tmp_path / "data", tmp_path / "c",
                              classes=classes)
  assert split.images.shape == (2, 20, 28, 28, 1)
  np.testing.assert_array_equal(split.images[1, ..., 0],
                                np.rot90(split.images[0, ..., 0], 1, (1, 2)))
  with pytest.raises(DatasetError, match="not in the Omniglot zips"):
    omniglot.load_split("train", tmp_path / "data", tmp_path / "c",
                        classes=["Nope/character01/rot000"])


def test_cache_is_reused_and_rebuilt_when_source_changes(tmp_path):
  write_omniglot_zips(tmp_path / "data", seed=0)
  first, _ = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  npy = tmp_path / "c" / f"{omniglot.CACHE_NAME}.npy"
  mtime = npy.stat().st_mtime_ns
  omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  assert npy.stat().st_mtime_ns == mtime  # reused
  zpath = tmp_path / "data" / "omniglot" / "images_background.zip"
  write_omniglot_zips(tmp_path / "data", seed=1)
  os.utime(zpath, (1, 1))  # a different fingerprint
  second, _ = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  assert not np.array_equal(first, second)


def test_interrupted_cache_build_leaves_no_valid_cache(tmp_path):
  def fill(out):
    out[0] = 1
    raise KeyboardInterrupt
  with pytest.raises(KeyboardInterrupt):
    cache.build(tmp_path, "x", [["f", 1, 1]], (4, 3), np.uint8, fill)
  assert cache.load(tmp_path, "x", [["f", 1, 1]]) is None
  assert list(tmp_path.iterdir()) == []


def test_missing_omniglot_without_network_names_files_urls_and_flag(
    tmp_path, no_network):
  with pytest.raises(DatasetError) as err:
    omniglot.load_characters(tmp_path / "empty", tmp_path / "c")
  msg = str(err.value)
  for part in ("images_background.zip", "images_evaluation.zip",
               omniglot.ZIP_URLS["images_background.zip"], "--data_dir",
               "METALSTM_DATA_DIR"):
    assert part in msg


def test_corrupt_omniglot_zip(tmp_path, no_network):
  write_omniglot_zips(tmp_path / "data")
  (tmp_path / "data" / "omniglot" / "images_evaluation.zip").write_bytes(
      b"not a zip")
  with pytest.raises(DatasetError, match="not a readable zip"):
    omniglot.load_characters(tmp_path / "data", tmp_path / "c")


def test_corrupt_omniglot_image(tmp_path):
  write_omniglot_zips(tmp_path / "data", alphabets=1, characters=1)
  zpath = tmp_path / "data" / "omniglot" / "images_background.zip"
  with zipfile.ZipFile(zpath) as zf:
    items = [(n, zf.read(n)) for n in zf.namelist()]
  with zipfile.ZipFile(zpath, "w") as zf:
    for i, (n, data) in enumerate(items):
      zf.writestr(n, b"garbage" if i == 3 else data)
  with pytest.raises(DatasetError, match="Cannot decode Omniglot image"):
    omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  assert not (tmp_path / "c" / f"{omniglot.CACHE_NAME}.json").exists()


def test_data_dir_resolution(tmp_path, monkeypatch):
  monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "env"))
  assert paths.resolve_data_dir("/explicit") == paths.pathlib.Path("/explicit")
  assert paths.resolve_data_dir(None) == tmp_path / "env"
  monkeypatch.delenv(paths.DATA_DIR_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert paths.resolve_data_dir(None) == tmp_path / "xdg" / "metalstm" / "data"
  monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cenv"))
  assert paths.resolve_cache_dir(None) == tmp_path / "cenv"


@pytest.mark.parametrize("as_zip", [False, True])
def test_mini_imagenet_layouts(tmp_path, as_zip):
  write_mini_imagenet(tmp_path / "data", as_zip=as_zip)
  split = mini_imagenet.load_split("train", tmp_path / "data", tmp_path / "c")
  assert split.images.shape == (3, 8, 84, 84, 3)
  assert split.images.dtype == np.uint8
  assert isinstance(split.images, np.memmap)
  # Every image of a synthetic class has one flat colour; classes differ.
  assert split.images[0].astype(float).std(axis=(0, 1, 2)).max() < 3
  assert np.abs(split.images[0, 0].astype(float) -
                split.images[1, 0].astype(float)).max() > 3
  val = mini_imagenet.load_split("val", tmp_path / "data", tmp_path / "c")
  assert val.images.shape[0] == 2


def test_mini_imagenet_csv_naming_missing_images(tmp_path):
  root = write_mini_imagenet(tmp_path / "data")
  (root / "images" / "n0000000000000003.jpg").unlink()
  with pytest.raises(DatasetError, match="not in .* n0000000000000003.jpg"):
    mini_imagenet.load_split("train", tmp_path / "data", tmp_path / "c")


def test_mini_imagenet_missing_files_and_corrupt_image(tmp_path):
  with pytest.raises(DatasetError, match="Missing .*train.csv"):
    mini_imagenet.load_split("train", tmp_path / "nothing", tmp_path / "c")
  root = write_mini_imagenet(tmp_path / "data")
  (root / "images" / "n0000000000000002.jpg").write_bytes(b"broken")
  with pytest.raises(DatasetError, match="Cannot decode"):
    mini_imagenet.load_split("train", tmp_path / "data", tmp_path / "c")
  assert not list((tmp_path / "c").glob("*.json"))


def _inspect(dataset, data_dir, cache_dir, *extra):
  """Runs `python -m data_prep`; returns the finished process."""
  return subprocess.run(
      [sys.executable, "-m", "data_prep", f"--dataset={dataset}",
       f"--data_dir={data_dir}", f"--cache_dir={cache_dir}", *extra],
      capture_output=True, text=True, cwd=REPO)


def _inspect_json(dataset, data_dir, cache_dir):
  out = _inspect(dataset, data_dir, cache_dir, "--json")
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_inspect_command_json(tmp_path):
  write_mini_imagenet(tmp_path / "data", as_zip=True)
  summary = _inspect_json("mini_imagenet", tmp_path / "data", tmp_path / "c")
  assert summary == {"train": {"classes": 3, "images_per_class": 8},
                     "val": {"classes": 2, "images_per_class": 8},
                     "test": {"classes": 2, "images_per_class": 8}}


def test_inspect_command_reports_missing_data(tmp_path):
  out = _inspect("mini_imagenet", tmp_path, tmp_path / "c")
  assert out.returncode == 1 and "error: Missing" in out.stderr


def test_training_without_the_data_says_which_files_and_leaves_no_run(
    tmp_path):
  """main.py on a data directory without mini-ImageNet: the message names
  the missing file; the run directory it would have created is not left
  behind (one that existed before is kept)."""
  kept = tmp_path / "kept"
  kept.mkdir()
  for logdir in (tmp_path / "run", kept):
    out = subprocess.run(
        [sys.executable, "main.py", "--dataset=mini_imagenet", "--shots=5",
         f"--data_dir={tmp_path / 'empty'}", f"--cache_dir={tmp_path / 'c'}",
         f"--logdir={logdir}"], capture_output=True, text=True, cwd=REPO,
        timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "error: Missing" in out.stderr and "train.csv" in out.stderr
  assert not (tmp_path / "run").exists()
  assert kept.is_dir()


@pytest.mark.real_data
def test_real_omniglot_vinyals_split_counts(real_data_dir, shared_cache_dir):
  summary = _inspect_json("omniglot", real_data_dir, shared_cache_dir)
  assert summary == {"train": {"classes": 4112, "images_per_class": 20},
                     "val": {"classes": 688, "images_per_class": 20},
                     "test": {"classes": 1692, "images_per_class": 20}}


@pytest.mark.real_data
def test_real_mini_imagenet_split_counts(real_data_dir, shared_cache_dir):
  counts = {}
  for split in ("train", "val", "test"):
    s = mini_imagenet.load_split(split, real_data_dir, shared_cache_dir)
    counts[split] = (s.num_classes, s.images_per_class, s.image_shape)
  assert counts == {"train": (64, 600, (84, 84, 3)),
                    "val": (16, 600, (84, 84, 3)),
                    "test": (20, 600, (84, 84, 3))}


def test_missing_omniglot_zips_are_downloaded(tmp_path, monkeypatch):
  """The download path, against a file server on the loopback interface."""
  import functools
  import http.server
  import threading
  write_omniglot_zips(tmp_path / "served")
  handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                              directory=str(tmp_path / "served" / "omniglot"))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(omniglot, "ZIP_URLS", {
        name: f"{base}/{name}" for name in omniglot.ZIP_URLS})
    array, names = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  finally:
    server.shutdown()
  assert array.shape == (12, 20, 28, 28) and len(names) == 12
  for name in omniglot.ZIP_URLS:
    assert (tmp_path / "data" / "omniglot" / name).is_file()
  assert not list((tmp_path / "data" / "omniglot").glob("*.part"))
