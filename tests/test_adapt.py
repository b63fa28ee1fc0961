"""The input adapter (`data_prep.adapt`) and cross-domain testing
(`--test_dataset`, `--image_size`, `--channels`)."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import write_mini_imagenet
from data_prep import DatasetError, adapt
from data_prep.splits_data import SplitData
from helpers import build, synthetic_splits, tiny_config
from metalstm_tf import tasks

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_channels_by_luminance_and_replication():
  rgb = np.zeros((2, 2, 3), np.uint8)
  rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
  gray = adapt.adapt_image(rgb, (2, 2, 1))
  assert gray.shape == (2, 2, 1)
  # ITU-R 601-2 luma, as PIL rounds it.
  assert abs(int(gray[0, 0, 0]) - (0.299 * 200 + 0.587 * 100 + 0.114 * 50)) < 1
  back = adapt.adapt_image(gray, (2, 2, 3))
  assert back.shape == (2, 2, 3) and (back == gray).all()


def test_area_resize_averages_blocks_and_repeats_when_enlarging():
  image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10
  small = adapt.adapt_image(image, (2, 2, 1))[..., 0]
  blocks = image[..., 0].reshape(2, 2, 2, 2).swapaxes(1, 2).mean((2, 3))
  np.testing.assert_allclose(small, blocks, atol=0.5)
  big = adapt.adapt_image(small[..., None], (4, 4, 1))[..., 0]
  np.testing.assert_array_equal(big, np.kron(small, np.ones((2, 2))))
  assert adapt.describe((84, 84, 3), (28, 28, 1)) == \
      "luminance,area_84x84_to_28x28"
  assert adapt.describe((28, 28, 1), (84, 84, 3)) == \
      "replicate_channels,area_28x28_to_84x84"
  assert adapt.describe((28, 28, 1), (28, 28, 1)) == "none"


def test_adapted_split_is_cached_per_shape_and_content(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (3, 4, 24, 24, 3),
                                             dtype=np.uint8)
  split = SplitData(images, ("a", "b", "c"))
  out = adapt.adapt_split(split, (16, 16, 1), "syn_test", tmp_path)
  assert out.images.shape == (3, 4, 16, 16, 1)
  np.testing.assert_array_equal(out.images[2, 3],
                                adapt.adapt_image(images[2, 3], (16, 16, 1)))
  assert list(tmp_path.glob("syn_test_16x16x1.npy"))
  again = adapt.adapt_split(split, (16, 16, 1), "syn_test", tmp_path)
  np.testing.assert_array_equal(again.images, out.images)
  changed = images.copy()
  changed[0, 0] = 255 - changed[0, 0]
  rebuilt = adapt.adapt_split(SplitData(changed, split.class_names),
                              (16, 16, 1), "syn_test", tmp_path)
  np.testing.assert_array_equal(rebuilt.images[0, 0],
                                adapt.adapt_image(changed[0, 0], (16, 16, 1)))
  assert adapt.adapt_split(split, (24, 24, 3), "syn_test", tmp_path) is split


def test_trainer_tests_on_another_tasks_episodes(tmp_path):
  config = tiny_config(tmp_path)
  task, _, trainer = build(config)  # 16x16x1
  rgb = synthetic_splits(size=24, seed=5)["test"]
  rgb = SplitData(np.repeat(rgb.images, 3, axis=-1), rgb.class_names)
  other = adapt.adapt_split(rgb, task.learner.example_shape, "syn", tmp_path)
  cross = tasks.image_task({"test": other}, config)
  result = trainer.test(task=cross, name="_syn")
  own = trainer.test()
  assert np.isfinite(result["mean"]) and result["episodes"] == 4
  assert result["values"] != own["values"]
  assert (tmp_path / "run" / "test_episodes_syn.csv").is_file()
  few = SplitData(other.images[:2], other.class_names[:2])
  with pytest.raises(DatasetError, match="3-way episodes need 3 distinct "
                     "classes but this split has only 2"):
    tasks.image_task({"test": few}, config)


@pytest.mark.slow
def test_main_trains_at_another_shape_and_tests_across(tmp_path):
  """A run on synthetic mini-ImageNet files adapted to 32x32 grayscale,
  tested on the same files at their own 84x84 RGB through the adapter."""
  write_mini_imagenet(tmp_path / "data", classes=(4, 3, 3), per_class=6)
  common = ["--dataset=mini_imagenet", "--ways=2", "--shots=1",
            "--queries=2", f"--data_dir={tmp_path / 'data'}",
            f"--cache_dir={tmp_path / 'cache'}",
            f"--logdir={tmp_path / 'run'}"]
  out = subprocess.run(
      [sys.executable, "main.py", *common, "--image_size=32", "--channels=1",
       "--episodes=4", "--val_every=2", "--val_episodes=2",
       "--test_episodes=3", "--filters=4", "--test_dataset=mini_imagenet"],
      capture_output=True, text=True, cwd=REPO, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
  assert len(lines) == 4, lines  # own test, then across; per query, together
  assert all("test_dataset" not in l for l in lines[:2])
  assert re.search(r"queries=transductive test_dataset=mini_imagenet "
                   r"adapter=luminance,area_84x84_to_32x32$", lines[3])
  assert list((tmp_path / "cache").glob("mini_imagenet_test_32x32x1.npy"))
  # A test dataset whose files are missing: refused before anything runs.
  wrong = subprocess.run(
      [sys.executable, "main.py", *common, "--mode=test",
       "--test_dataset=omniglot"],
      capture_output=True, text=True, cwd=REPO, timeout=900)
  assert wrong.returncode == 1
  assert "omniglot" in wrong.stderr.lower()
