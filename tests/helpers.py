"""Small synthetic tasks for fast model tests."""

import dataclasses
import sys

import numpy as np

from data_prep.splits_data import SplitData
from metalstm_tf import methods, tasks
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


def tiny_config(tmp_path, method="meta_lstm", **overrides) -> TrainConfig:
  """A small configuration; keyword arguments that name one of `method`'s
  options set that option (layer-1 hidden size 4 unless given)."""
  spec = methods.get(method)
  names = {f.name for f in dataclasses.fields(spec.options)}
  options = {k: overrides.pop(k) for k in list(overrides) if k in names}
  args = dict(dataset="omniglot", way=3, shot=1, queries=2, inner_steps=3,
              inner_batch_size=3, episodes=8, val_every=4, val_episodes=3,
              test_episodes=4, filters=4, seed=0,
              logdir=str(tmp_path / "run"), checkpoint_every=2)
  args.update(overrides)
  values = dataclasses.asdict(spec.default_options(args["dataset"],
                                                   args["shot"]))
  if "hidden_size" in names:
    values["hidden_size"] = 4
  values.update(options)
  return TrainConfig(**args, method=method,
                     method_options=spec.options(**values))


def with_options(config: TrainConfig, **options) -> TrainConfig:
  """`config` with some of its method's options replaced."""
  return dataclasses.replace(config, method_options=dataclasses.replace(
      config.method_options, **options))


def build(config):
  """Task, method and trainer on synthetic 16x16 data."""
  from metalstm_tf.trainer import MetaTrainer
  task = tasks.image_task(synthetic_splits(), config)
  method = methods.build(config, task.learner)
  return task, method, MetaTrainer(task, method, config)


def short_sine_command(logdir, **flags) -> list[str]:
  """`python main.py` for a short sine run in `logdir`: 40 tasks, validation
  every 20 on 5, a 5-task test, hidden size 4, checkpoints every 10. Keyword
  arguments replace or add flags (True: `--name`, False: `--noname`, None:
  left out)."""
  values = {"dataset": "sine", "shots": 5, "episodes": 40, "val_every": 20,
            "val_episodes": 5, "test_episodes": 5, "hidden_size": 4,
            "checkpoint_every": 10, **flags, "logdir": logdir}
  command = [sys.executable, "main.py"]
  for name, value in values.items():
    if value is True or value is False:
      command.append(f"--{'' if value else 'no'}{name}")
    elif value is not None:
      command.append(f"--{name}={value}")
  return command
