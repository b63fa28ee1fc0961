"""Few-shot sine-wave regression (Finn et al. 2017; Huisman et al. 2023,
Are LSTMs Good Few-Shot Learners?).

A task is y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5],
with K support points and `queries` query points; the learner is a 1-40-40-1
ReLU MLP trained with the MSE loss. Task `i` of a stream is a pure function of
(seed, i), like the image episodes.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from metalstm_tf import pipeline, summaries
from metalstm_tf.config import TrainConfig
from metalstm_tf.episodes import Episode
from metalstm_tf.learners import MLPLearner
from metalstm_tf.sampling import episode_rng
from metalstm_tf.tasks import Task, eval_seed

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, np.pi)
X_RANGE = (-5.0, 5.0)


@dataclasses.dataclass(frozen=True)
class SineTask:
  """One regression task and its points (x, y: `[n, 1]` float32)."""
  amplitude: float
  phase: float
  support_x: np.ndarray
  support_y: np.ndarray
  query_x: np.ndarray
  query_y: np.ndarray

  def __call__(self, x):
    return self.amplitude * np.sin(x - self.phase)


def sample_task(rng: np.random.Generator, shots: int,
                queries: int) -> SineTask:
  """Draws amplitude, phase and the support and query inputs."""
  if shots <= 0 or queries <= 0:
    raise ValueError(f"shots and queries must be positive, got {shots}, "
                     f"{queries}.")
  amplitude = rng.uniform(*AMPLITUDE)
  phase = rng.uniform(*PHASE)
  x = rng.uniform(*X_RANGE, size=(shots + queries, 1)).astype(np.float32)
  y = (amplitude * np.sin(x - phase)).astype(np.float32)
  return SineTask(amplitude, phase, x[:shots], y[:shots], x[shots:],
                  y[shots:])


def task_dataset(shots: int, queries: int, seed: int, start: int = 0,
                 num_tasks: int | None = None,
                 batch_size: int | None = None) -> tf.data.Dataset:
  """A dataset of `Episode`s (images = x, labels = y) of sine tasks."""

  def make(index):
    t = sample_task(episode_rng(seed, int(index)), shots, queries)
    return t.support_x, t.support_y, t.query_x, t.query_y

  def load(index):
    sx, sy, qx, qy = tf.numpy_function(make, [index], [tf.float32] * 4,
                                       stateful=False)
    return Episode(tf.ensure_shape(sx, [shots, 1]),
                   tf.ensure_shape(sy, [shots, 1]),
                   tf.ensure_shape(qx, [queries, 1]),
                   tf.ensure_shape(qy, [queries, 1]))

  return pipeline.indexed_stream(load, start, num_tasks, batch_size)


def eval_task(config: TrainConfig, split: str, index: int) -> SineTask:
  """Task `index` of the fixed 'val' or 'test' stream: the task that
  `sine_task(config).eval_dataset(split, n)` yields at that position."""
  return sample_task(episode_rng(eval_seed(config.seed, split), index),
                     config.shot, config.queries)


def sine_task(config: TrainConfig) -> Task:
  """The sine benchmark as a trainer task (metric: query MSE)."""
  learner = MLPLearner((1, 40, 40, 1), seed=config.seed)

  def train_dataset(start):
    return task_dataset(config.shot, config.queries, config.seed, start,
                        batch_size=config.meta_batch_size)

  def eval_dataset(split, num):
    return task_dataset(config.shot, config.queries,
                        eval_seed(config.seed, split), num_tasks=num)

  def figure(trainer) -> bytes:
    return prediction_figure(trainer, config)

  return Task(learner=learner, train_dataset=train_dataset,
              eval_dataset=eval_dataset, metric="mse", test_figure=figure)


def prediction_figure(trainer, config: TrainConfig, num_tasks: int = 4) -> bytes:
  """PNG: true curve, support points, and the learner's prediction before
  (theta_0 = c_0) and after adaptation, for a few test tasks."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  method = trainer.method
  grid = np.linspace(*X_RANGE, 200, dtype=np.float32)[:, None]
  fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 3.2))
  for k, ax in enumerate(np.atleast_1d(axes)):
    t = eval_task(config, "test", k)
    after = method.run(tf.constant(t.support_x), tf.constant(t.support_y),
                       tf.constant(grid)).outputs.numpy()
    before = method.unadapted_outputs(tf.constant(grid))
    if before is not None:
      before = before.numpy()
    ax.plot(grid, t(grid), "k-", lw=1.5, label="true")
    if before is not None:
      ax.plot(grid, before, "C1--", lw=1, label="before adaptation")
    ax.plot(grid, after, "C0-", lw=1.5, label="after adaptation")
    ax.plot(t.support_x, t.support_y, "r^", label=f"{config.shot} support")
    ax.set_title(f"A={t.amplitude:.2f}, phase={t.phase:.2f}")
    ax.set_ylim(-5.5, 5.5)
  np.atleast_1d(axes)[0].legend(fontsize=7)
  return summaries.figure_png(fig, dpi=90)
