"""Wires a TrainConfig into a task, a method and a trainer."""

import tensorflow as tf

from metalstm_tf import methods, tasks
from metalstm_tf.config import TrainConfig
from metalstm_tf.trainer import MetaTrainer


def build_task(config: TrainConfig, data_dir=None, cache_dir=None) -> tasks.Task:
  """The task `config.dataset` names (loading or building its data)."""
  if config.dataset == "sine":
    from metalstm_tf import sine
    return sine.sine_task(config)
  import data_prep
  shape = config.image_shape(data_prep.native_shape(config.dataset))
  return tasks.image_task(
      data_prep.load_splits(config.dataset, data_dir, cache_dir,
                            image_shape=shape), config)


def build(config: TrainConfig, data_dir=None, cache_dir=None,
          strategy: tf.distribute.Strategy | None = None):
  """(task, method, trainer) for `config`, variables under `strategy`."""
  strategy = strategy or tf.distribute.get_strategy()
  task = build_task(config, data_dir, cache_dir)
  with strategy.scope():
    method = methods.build(config, task.learner)
  return task, method, MetaTrainer(task, method, config, strategy)


def make_strategy(num_replicas: int) -> tf.distribute.Strategy:
  """In a `TF_CONFIG` cluster of several processes, a
  MultiWorkerMirroredStrategy (one replica per process; `num_replicas` must
  be 1). Otherwise the default strategy for 1 replica, else a
  MirroredStrategy over `num_replicas` GPUs if there are that many, or
  logical CPU devices.

  Must be called before TensorFlow initialises its devices.
  """
  from metalstm_tf import cluster
  if cluster.role().workers > 1:
    if num_replicas > 1:
      raise ValueError("--num_replicas mirrors on one machine; in a "
                       "TF_CONFIG cluster every process is one replica. "
                       "Leave --num_replicas at 1.")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if num_replicas <= 1:
    return tf.distribute.get_strategy()
  if len(tf.config.list_physical_devices("GPU")) >= num_replicas:
    return tf.distribute.MirroredStrategy(
        [f"/gpu:{i}" for i in range(num_replicas)])
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_replicas)
  names = [d.name for d in tf.config.list_logical_devices("CPU")]
  return tf.distribute.MirroredStrategy(names[:num_replicas])
