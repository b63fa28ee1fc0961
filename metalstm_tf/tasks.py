"""Tasks: what a learner learns and where its episodes come from.

A task bundles a learner with three episode streams (train, val, test) and
the name of its metric, so the trainer knows nothing about datasets.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from data_prep.splits_data import SplitData
from metalstm_tf import pipeline
from metalstm_tf.config import TrainConfig
from metalstm_tf.learners import Conv4Learner, Learner

# Offsets of the evaluation streams' seeds from the run seed: validation and
# test episodes are fixed sets, independent of training; so is the fixed
# set of training-class episodes an evaluation may read ('train': how well
# a model fits the classes it was trained on).
VAL_SEED_OFFSET = 1_000_003
TEST_SEED_OFFSET = 2_000_003
TRAIN_EVAL_SEED_OFFSET = 3_000_003


def eval_seed(seed: int, split: str) -> int:
  """Seed of the fixed evaluation episodes of 'val', 'test' or 'train'."""
  return seed + {"val": VAL_SEED_OFFSET, "train": TRAIN_EVAL_SEED_OFFSET
                 }.get(split, TEST_SEED_OFFSET)


@dataclasses.dataclass
class Task:
  """A learner and its episode streams.

  Attributes:
    learner: the learner network.
    train_dataset: `start -> Dataset` of meta-batches `[B, ...]` starting at
      training episode `start` (endless).
    eval_dataset: `(split, num_episodes) -> Dataset` of single fixed
      episodes, never augmented ('val', 'test', or 'train' for the
      training classes).
    metric: 'accuracy' (reported in percent, higher is better) or 'mse'.
    test_figure: optional `trainer -> PNG bytes` drawn after the test.
  """
  learner: Learner
  train_dataset: Callable[[int], tf.data.Dataset]
  eval_dataset: Callable[[str, int], tf.data.Dataset]
  metric: str = "accuracy"
  test_figure: Callable[..., bytes] | None = None

  @property
  def higher_is_better(self) -> bool:
    return self.metric == "accuracy"

  @property
  def report_scale(self) -> float:
    return 100.0 if self.metric == "accuracy" else 1.0


def image_task(splits: dict[str, SplitData], config: TrainConfig) -> Task:
  """Few-shot classification on image splits with a Conv-4 learner
  (`splits` may hold only some of train / val / test, e.g. only the test
  split of a cross-domain test)."""
  image_shape = next(iter(splits.values())).image_shape
  learner = Conv4Learner(config.way, image_shape, filters=config.filters,
                         seed=config.seed, fused=config.fused_kernel,
                         conv_precision=config.conv_precision)

  def train_dataset(start):
    return pipeline.episode_dataset(
        splits["train"], config.way, config.shot, config.queries,
        seed=config.seed, start=start, augment=config.augment,
        batch_size=config.meta_batch_size)

  def eval_dataset(split, num_episodes):
    return pipeline.episode_dataset(
        splits[split], config.way, config.shot, config.queries,
        seed=eval_seed(config.seed, split), num_episodes=num_episodes,
        augment=False)

  # Building the three samplers now reports bad sizes before any training.
  for split in splits:
    pipeline.episode_sampler(splits[split], config.way, config.shot,
                             config.queries)
  return Task(learner=learner, train_dataset=train_dataset,
              eval_dataset=eval_dataset, metric="accuracy")
