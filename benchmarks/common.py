"""What the TensorFlow benchmark scripts share: the Ravi configuration they
time, its first training episodes, the median-of-rounds timing loop, and the
machine's float32 matrix-product rate (the floor under a step's time).

(`pytorch_reference.py` keeps its own loop: it must not import TensorFlow.)
"""

import statistics
import time

import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

from metalstm_tf import builder
from metalstm_tf.config import TrainConfig

import ravi


def ravi_config(dataset: str, logdir: str, shots: int = 1,
                **overrides) -> TrainConfig:
  """5-way K-shot in the Ravi config (`ravi.py`: 1-shot 12 inner steps of
  batch 5, 5-shot 8 of batch 25), 32 filters, 15 queries per class, no
  augmentation."""
  steps, batch = ravi.inner(shots)
  return TrainConfig(dataset=dataset, way=ravi.WAY, shot=shots,
                     queries=ravi.QUERIES, inner_steps=steps,
                     inner_batch_size=batch, filters=ravi.FILTERS,
                     augment=False, logdir=logdir, **overrides)


def build_with_episodes(config: TrainConfig, data_dir, cache_dir, n: int):
  """(task, method, trainer, the first `n` training meta-batches)."""
  task, method, trainer = builder.build(config, data_dir, cache_dir)
  it = iter(task.train_dataset(0))
  return task, method, trainer, [next(it) for _ in range(n)]


def median_seconds_per_call(fn, inputs, rounds: int = 1) -> float:
  """Median over `rounds` of the mean time of `fn(x)` over `inputs` (after
  one warm-up call), waiting for the last call's tensors each round."""
  fn(inputs[0])
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    for x in inputs:
      out = fn(x)
    tf.nest.map_structure(lambda t: t.numpy(), out)
    times.append((time.perf_counter() - start) / len(inputs))
  return statistics.median(times)


def matmul_gflops(seconds: float, n: int = 1024) -> float:
  """This machine's float32 rate, in GFLOP/s, on `n` x `n` matrix products
  (TensorFlow's default threads, i.e. every core), timed for `seconds`."""
  a = tf.random.stateless_normal([n, n], seed=[0, 1])

  @tf.function
  def ten_products(x):
    for _ in range(10):
      x = tf.matmul(x, a) * n**-0.5  # keeps the values' scale
    return x

  x = ten_products(a)  # trace, warm up
  x.numpy()
  products, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    x = ten_products(x)
    x.numpy()
    products += 10
  return products * 2 * n**3 / (time.perf_counter() - start) / 1e9
