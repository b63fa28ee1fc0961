"""Invariants and errors of the numpy episode sampler."""

import numpy as np
import pytest

from data_prep import DatasetError
from metalstm_tf.sampling import EpisodeSampler, episode_rng


def test_episode_invariants():
  sampler = EpisodeSampler(num_classes=30, images_per_class=20, way=5,
                           shot=3, queries=4)
  rng = np.random.default_rng(0)
  seen_label_orders = set()
  for _ in range(50):
    e = sampler.sample(rng)
    assert e.support_labels.shape == (15,) and e.query_labels.shape == (20,)
    classes = np.unique(e.support_classes)
    assert len(classes) == 5  # distinct classes
    assert set(np.unique(e.query_classes)) == set(classes)
    # One label per class, a permutation of 0..way-1, same in support and query.
    mapping = {}
    for cls, lab in zip(np.r_[e.support_classes, e.query_classes],
                        np.r_[e.support_labels, e.query_labels]):
      assert mapping.setdefault(cls, lab) == lab
    assert sorted(mapping.values()) == list(range(5))
    seen_label_orders.add(tuple(mapping[c] for c in sorted(mapping)))
    for cls in classes:
      s = e.support_images[e.support_classes == cls]
      q = e.query_images[e.query_classes == cls]
      assert len(s) == 3 and len(q) == 4
      assert len(set(s) | set(q)) == 7  # no overlap, no repeats
  # Labels are remapped at random, not sorted by class id.
  assert len(seen_label_orders) > 10


def test_same_seed_same_episode_and_different_seeds_differ():
  sampler = EpisodeSampler(50, 20, 5, 1, 15)
  a = sampler.sample(episode_rng(3, 7))
  b = sampler.sample(episode_rng(3, 7))
  c = sampler.sample(episode_rng(3, 8))
  for field in a.__dataclass_fields__:
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.array_equal(a.query_images, c.query_images) or not \
      np.array_equal(a.query_classes, c.query_classes)


@pytest.mark.parametrize("kwargs, message", [
    (dict(way=0), "--ways must be a positive"),
    (dict(shot=-1), "--shots must be a positive"),
    (dict(queries=0), "--queries must be a positive"),
    (dict(way=11), "only 10"),
    (dict(shot=10, queries=11), "Lower --shots or --queries"),
])
def test_errors(kwargs, message):
  args = dict(num_classes=10, images_per_class=20, way=5, shot=1, queries=15)
  args.update(kwargs)
  with pytest.raises(DatasetError, match=message):
    EpisodeSampler(**args)


@pytest.mark.parametrize("flag, value, message", [
    ("--ways", 0, "--ways must be a positive integer"),
    ("--shots", -1, "--shots must be a positive integer"),
    ("--queries", 0, "--queries must be a positive integer"),
    ("--lr", -1, "--lr must be a positive finite number"),
    ("--lr", "nan", "--lr must be a positive finite number"),
    ("--clip", "inf", "--clip must be a positive finite number"),
    ("--input_gate_scale", "nan", "--input_gate_scale must be positive"),
    ("--inner_lr", 0.1, "--inner_lr does not apply to --method=meta_lstm"),
])
def test_command_line_rejects_bad_sizes_before_loading_data(tmp_path, flag,
                                                            value, message):
  import subprocess
  import sys
  from conftest import REPO
  out = subprocess.run(
      [sys.executable, "main.py", f"{flag}={value}",
       f"--data_dir={tmp_path}", f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 2
  assert message in out.stderr
  assert not (tmp_path / "run").exists()  # no empty run directory is left
