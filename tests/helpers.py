"""Small synthetic tasks for fast model tests."""

import numpy as np

from data_prep.splits_data import SplitData
from metalstm_tf import tasks
from metalstm_tf.config import TrainConfig


def synthetic_splits(classes=10, per_class=20, size=16, seed=0):
  """Classes of noisy copies of a per-class random prototype (learnable)."""
  rng = np.random.default_rng(seed)
  out = {}
  for i, name in enumerate(("train", "val", "test")):
    protos = rng.integers(0, 256, (classes, 1, size, size, 1))
    noise = rng.integers(-40, 40, (classes, per_class, size, size, 1))
    images = np.clip(protos + noise, 0, 255).astype(np.uint8)
    out[name] = SplitData(images, tuple(f"{name}{c}" for c in range(classes)))
  return out


def tiny_config(tmp_path, **overrides) -> TrainConfig:
  args = dict(dataset="omniglot", way=3, shot=1, queries=2, inner_steps=3,
              inner_batch_size=3, episodes=8, val_every=4, val_episodes=3,
              test_episodes=4, filters=4, hidden_size=4, seed=0,
              logdir=str(tmp_path / "run"), checkpoint_every=2)
  args.update(overrides)
  return TrainConfig(**args)


def build(config):
  """Task, rule and trainer on synthetic 16x16 data."""
  from metalstm_tf.builder import build_rule
  from metalstm_tf.trainer import MetaTrainer
  task = tasks.image_task(synthetic_splits(), config)
  rule = build_rule(config, task.learner.initial_theta())
  return task, rule, MetaTrainer(task, rule, config)
