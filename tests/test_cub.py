"""CUB-200-2011 from synthetic archives in the official layout (the real
images are not on the test machines): the split of Chen et al. 2019, classes
of unequal size, and the errors."""

import io
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from data_prep import DatasetError, cub, load_splits
from metalstm_tf import pipeline
from metalstm_tf.sampling import episode_rng


def _jpeg(colour) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((12, 10, 3), colour, np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def write_cub(root, classes=200, seed=0, as_archive=True, drop=None,
              skip_images_txt=False):
  """`root/cub/CUB_200_2011{.tgz,/}`: `classes` folders `NNN.Bird_N` with
  3-6 images each (one flat colour per class). Returns class -> count."""
  rng = np.random.default_rng(seed)
  files, counts, lines = {}, {}, []
  for c in range(classes):
    folder = f"{c + 1:03d}.Bird_{c}"
    counts[folder] = int(rng.integers(3, 7))
    colour = rng.integers(0, 255, 3)
    for j in range(counts[folder]):
      name = f"{folder}/Bird_{c}_{j:04d}.jpg"
      lines.append(f"{len(lines) + 1} {name}")
      if name != drop:
        files[f"images/{name}"] = _jpeg(colour)
  members = {"images.txt": "\n".join(lines) + "\n",
             "classes.txt": "".join(f"{c + 1} {f}\n"
                                    for c, f in enumerate(counts))}
  if skip_images_txt:
    del members["images.txt"]
  base = root / "cub"
  base.mkdir(parents=True, exist_ok=True)
  if as_archive:
    with tarfile.open(base / cub.ARCHIVE, "w:gz") as tar:
      for name, data in list(members.items()) + list(files.items()):
        data = data.encode() if isinstance(data, str) else data
        info = tarfile.TarInfo(f"{cub.FOLDER}/{name}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  else:
    for name, data in list(members.items()) + list(files.items()):
      path = base / cub.FOLDER / name
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(data.encode() if isinstance(data, str) else data)
  return counts


@pytest.mark.parametrize("as_archive", [True, False],
                         ids=["archive", "folder"])
def test_split_of_chen_et_al_with_unequal_classes(tmp_path, as_archive):
  counts = write_cub(tmp_path / "data", as_archive=as_archive)
  splits = load_splits("cub", tmp_path / "data", tmp_path / "cache")
  assert {s: d.num_classes for s, d in splits.items()} == {
      "train": 100, "val": 50, "test": 50}
  names = sorted(counts)
  assert splits["train"].class_names == tuple(names[0::2])
  assert splits["val"].class_names == tuple(names[1::4])
  assert splits["test"].class_names == tuple(names[3::4])
  for split in splits.values():
    assert split.image_shape == (84, 84, 3)
    assert split.class_sizes() == tuple(counts[c] for c in split.class_names)
    assert split.images_per_class == max(split.class_sizes())
    last = split.class_sizes()[0] - 1  # the last real image, then padding
    assert split.images[0, last].max() > 0
    if last + 1 < split.images_per_class:
      assert split.images[0, last + 1].max() == 0
  again = load_splits("cub", tmp_path / "data", tmp_path / "cache")  # cached
  np.testing.assert_array_equal(again["val"].images, splits["val"].images)


def test_unequal_classes_are_sampled_without_replacement_within_size(
    tmp_path):
  write_cub(tmp_path / "data", classes=8)
  split = load_splits("cub", tmp_path / "data", tmp_path / "cache",
                      splits=("train",))["train"]  # 4 classes, 3-6 images
  sizes = np.asarray(split.class_sizes())
  shot, queries = 1, int(sizes.min()) - 1
  sampler = pipeline.episode_sampler(split, 4, shot, queries)
  seen = np.zeros_like(sizes)
  for i in range(200):
    e = sampler.sample(episode_rng(0, i))
    classes = np.concatenate([e.support_classes, e.query_classes])
    images = np.concatenate([e.support_images, e.query_images])
    assert (images < sizes[classes]).all()
    for c in range(4):
      mine = images[classes == c]
      assert len(set(mine)) == len(mine) == shot + queries
      seen[c] = max(seen[c], mine.max())
  np.testing.assert_array_equal(seen, sizes - 1)  # every image is reachable
  with pytest.raises(DatasetError, match=r"Class 00\d\.Bird_\d has \d images "
                     r"but an episode needs"):
    pipeline.episode_sampler(split, 4, shot, int(sizes.max()))


def test_missing_and_broken_archives(tmp_path):
  with pytest.raises(DatasetError, match=r"CUB_200_2011\.tgz.*not downloaded"):
    cub.load_split("train", tmp_path / "none", tmp_path / "cache")
  write_cub(tmp_path / "a", classes=8, skip_images_txt=True)
  with pytest.raises(DatasetError, match="has no CUB_200_2011/images.txt"):
    cub.load_split("train", tmp_path / "a", tmp_path / "cache")
  write_cub(tmp_path / "b", classes=8, drop="001.Bird_0/Bird_0_0001.jpg")
  with pytest.raises(DatasetError, match=r"names 1 images .*first: "
                     r"001\.Bird_0/Bird_0_0001\.jpg"):
    cub.load_split("train", tmp_path / "b", tmp_path / "cache")
  write_cub(tmp_path / "c", classes=8, as_archive=False)
  (tmp_path / "c" / "cub" / cub.FOLDER / "images.txt").unlink()
  with pytest.raises(DatasetError, match="images.txt is missing"):
    cub.load_split("train", tmp_path / "c", tmp_path / "cache")
  shutil.rmtree(tmp_path / "c")


@pytest.mark.slow
def test_a_run_trains_validates_and_tests_on_cub(tmp_path):
  write_cub(tmp_path / "data", classes=40)  # 20 / 10 / 10 classes
  out = subprocess.run(
      [sys.executable, "main.py", "--dataset=cub", "--shots=1",
       "--queries=2", "--episodes=4", "--val_every=2", "--val_episodes=2",
       "--test_episodes=2", "--filters=4", f"--data_dir={tmp_path / 'data'}",
       f"--cache_dir={tmp_path / 'cache'}", f"--logdir={tmp_path / 'run'}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert re.search(r"Validation at episode 4: accuracy", out.stderr)
  results = re.findall(r"^RESULT dataset=cub ways=5 shots=1 split=test "
                       r"metric=accuracy .* episodes=2 .*queries=(\S+)$",
                       out.stdout, re.M)
  assert results == ["per_query", "transductive"]
  assert (tmp_path / "run" / "saved_model" / "saved_model.pb").exists()
