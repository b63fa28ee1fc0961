"""Wires a TrainConfig into a task, an update rule and a trainer."""

from metalstm_tf import tasks
from metalstm_tf.config import TrainConfig
from metalstm_tf.trainer import MetaTrainer
from metalstm_tf.update_rules import MetaLSTM


def build_task(config: TrainConfig, data_dir=None, cache_dir=None) -> tasks.Task:
  """The task `config.dataset` names (loading or building its data)."""
  if config.dataset == "sine":
    from metalstm_tf import sine
    return sine.sine_task(config)
  import data_prep
  return tasks.image_task(
      data_prep.load_splits(config.dataset, data_dir, cache_dir), config)


def build(config: TrainConfig, data_dir=None, cache_dir=None):
  """(task, rule, trainer) for `config`."""
  task = build_task(config, data_dir, cache_dir)
  rule = MetaLSTM(task.learner.initial_theta(), hidden_size=config.hidden_size,
                  preprocess=config.preprocess, seed=config.seed)
  return task, rule, MetaTrainer(task, rule, config)
