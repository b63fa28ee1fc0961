"""Meta-training, validation and test of a method on a task.

The outer step: run the method on each episode (for gradient-fed methods:
adapt the learner on the support set, recorded by an outer
`tf.GradientTape`), take the query loss, average over the meta-batch, clip
the meta-gradient by global norm and apply Adam. The trainer knows methods
only through `methods.base.Method`. With a multi-step loss the
objective is, for the first episodes, a weighted mean of the query losses
after every inner step (`multi_step_weights`).

Everything a user trained survives interruption: checkpoints (meta-parameters,
optimizer state, episode counter, best validation score) are written every
`checkpoint_every` episodes and on Ctrl-C; the episode streams are a function
of (seed, episode index), so a resumed run sees the same episodes an
uninterrupted one would.
"""

import contextlib
import math
import pathlib
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from metalstm_tf import summaries
from metalstm_tf.config import TrainConfig
from metalstm_tf.episodes import Episode
from metalstm_tf.methods.base import Method
from metalstm_tf.tasks import Task

def _role_in(strategy):
  """This process's cluster role under `strategy` (a single process for
  every strategy but MultiWorkerMirroredStrategy)."""
  from metalstm_tf import cluster
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return cluster.role()
  return cluster.Role(1, True, "single process")


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (disk full, file too large, no
  permission); the message says where and what to do."""


WRITE_ERRORS = (tf.errors.OpError, OSError)  # what a failed write raises


def write_error_cause(error) -> str:
  """The cause of a failed write, in a few words (`File too large`...)."""
  return (getattr(error, "message", None) or str(error)).strip()


def _write_checkpoint(manager, number: int) -> str:
  """`manager.save(number)`, or a CheckpointWriteError that names the
  directory, the cause and the checkpoint training would resume from."""
  try:
    return manager.save(checkpoint_number=number)
  except WRITE_ERRORS as e:
    raise CheckpointWriteError(
        f"Could not write checkpoint {number} in {manager.directory} "
        f"({write_error_cause(e)}). Free some disk space (or move the run to a "
        "disk with room and give its --logdir), then run the same command "
        "again: it resumes from the last checkpoint written, "
        f"{manager.latest_checkpoint or 'none yet'}.") from e


class NonFiniteError(FloatingPointError):
  """The meta-parameters became NaN or infinite."""


NUM_TRACKED_COORDINATES = 8  # Coordinates whose traces (gates) are plotted.


def mean_and_ci95(values) -> tuple[float, float]:
  """Mean and 95% confidence half-width 1.96 * std / sqrt(n)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std() / math.sqrt(len(values)))


def _mean_over_steps(values: list) -> tf.Tensor:
  """The mean of a list of equal-sized per-step tensors (without stacking
  them into one)."""
  return tf.add_n([tf.reduce_mean(v) for v in values]) / len(values)


def learning_rate(config: TrainConfig):
  """Adam's learning rate: a float, or a schedule over meta-updates."""
  if config.lr_schedule == "cosine":
    updates = -(-config.episodes // config.meta_batch_size)
    return keras.optimizers.schedules.CosineDecay(config.lr, updates)
  return config.lr


def multi_step_weights(episode, anneal_episodes: int,
                       num_steps: int) -> tf.Tensor:
  """`[num_steps]` weights of the query losses after each inner step.

  MAML++'s multi-step loss (Antoniou et al. 2019), annealed linearly: at
  episode 0 every step weighs 1/num_steps; the intermediate steps' weights
  fall to 0 and the last step's rises to 1 by episode `anneal_episodes`,
  after which the objective is the paper's final-step query loss.
  """
  progress = tf.minimum(
      tf.cast(episode, tf.float32) / float(anneal_episodes), 1.0)
  last = tf.one_hot(num_steps - 1, num_steps)
  return (1.0 - progress) / num_steps + progress * last


class MetaTrainer:
  """Trains `method` on `task` as `config` says.

  Args:
    task: learner and episode streams.
    method: the method (its trainable weights are the meta-parameters);
      created under `strategy.scope()` when a strategy is given.
    config: the run configuration.
    strategy: a `tf.distribute` strategy; the episodes of every meta-batch
      are split across its replicas (`meta_batch_size` must be a multiple of
      the replica count). Default: the default (single-replica) strategy.
  """

  def __init__(self, task: Task, method: Method, config: TrainConfig,
               strategy: tf.distribute.Strategy | None = None):
    self.task, self.learner, self.method, self.config = (task, task.learner,
                                                         method, config)
    self.strategy = strategy or tf.distribute.get_strategy()
    self.replicas = self.strategy.num_replicas_in_sync
    self.role = _role_in(self.strategy)
    if self.role.workers > 1 and self.replicas != self.role.workers:
      raise ValueError(f"{self.replicas} replicas on {self.role.workers} "
                       "workers: give each worker process one replica.")
    if config.meta_batch_size % self.replicas:
      raise ValueError(
          f"meta_batch_size={config.meta_batch_size} cannot be split evenly "
          f"across {self.replicas} replicas; use a multiple of "
          f"{self.replicas}.")
    if config.multi_step_loss_episodes and not method.supports_step_outputs:
      raise ValueError(f"--multi_step_loss_episodes needs query predictions "
                       f"after every inner step, which --method="
                       f"{config.method} does not make; leave it at 0.")
    self.logdir = pathlib.Path(config.logdir)
    with self.strategy.scope():
      self.optimizer = keras.optimizers.Adam(learning_rate(config))
      self.optimizer.build(method.trainable_variables)
    self.episode = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.best_metric = tf.Variable(np.nan, dtype=tf.float64, trainable=False)
    self.best_episode = tf.Variable(-1, dtype=tf.int64, trainable=False)
    self.checkpoint = tf.train.Checkpoint(
        **method.trackables(), optimizer=self.optimizer,
        episode=self.episode, best_metric=self.best_metric,
        best_episode=self.best_episode)
    # Only the chief writes the run directory; the other workers write their
    # (identical) checkpoints into a scratch directory, since every worker
    # must take part in a save, and read the chief's to resume.
    self._scratch = (None if self.role.is_chief else
                     tempfile.TemporaryDirectory(prefix="metalstm_worker_"))
    written = (self.logdir if self._scratch is None else
               pathlib.Path(self._scratch.name))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, str(written / "checkpoints"), max_to_keep=2)
    self.best_checkpoint = tf.train.Checkpoint(**method.trackables(),
                                               episode=self.episode)
    self.best_manager = tf.train.CheckpointManager(
        self.best_checkpoint, str(written / "best"), max_to_keep=1)
    rng = np.random.default_rng(config.seed)
    size = method.trace_size
    self.tracked = tf.constant(
        np.sort(rng.choice(size, min(NUM_TRACKED_COORDINATES, size),
                           replace=False)) if size else np.zeros([0]),
        tf.int32)
    self._meta_gradients = tf.function(self._meta_gradients_impl,
                                       jit_compile=config.xla)
    self.train_step = tf.function(self._train_step_impl)
    self.eval_step = tf.function(self._eval_step_impl, jit_compile=config.xla)
    self.eval_step_both = tf.function(self._eval_step_both_impl,
                                      jit_compile=config.xla)
    self._writers = {}

  # ---------------------------------------------------------------- steps --
  def _ops(self):
    """Context of every traced step: standard TensorFlow ops only when the
    config turns the fused kernel off or compiles with XLA (which cannot
    compile custom kernels)."""
    if self.config.xla or not self.config.fused_kernel:
      return self.method.standard_ops()
    return contextlib.nullcontext()

  def _run(self, episode: Episode, keep_steps=False, transductive=True):
    return self.method.run(episode.support_images, episode.support_labels,
                           episode.query_images, keep_steps=keep_steps,
                           transductive=transductive)

  def episode_loss(self, episode: Episode, transductive=True):
    """Query loss, query metric and the method's output of one episode."""
    out = self._run(episode, transductive=transductive)
    return (*self._query_loss_and_metric(episode, out), out)

  def _query_loss_and_metric(self, episode: Episode, out):
    """The query loss and metric of the method's output `out`."""
    return (self.method.loss(out.outputs, episode.query_labels),
            self.method.metric(out.outputs, episode.query_labels))

  def _training_objective(self, episode: Episode):
    """(objective, final query loss, query metric, method output) of one
    training episode: the objective is the final query loss, or while the
    multi-step loss lasts the weighted mean of every step's query loss."""
    anneal = self.config.multi_step_loss_episodes
    if not anneal:
      loss, metric, out = self.episode_loss(episode)
      return loss, loss, metric, out
    out = self._run(episode, keep_steps=True)
    losses = [self.method.loss(o, episode.query_labels)
              for o in out.step_outputs]
    weights = multi_step_weights(self.episode, anneal, len(losses))
    objective = tf.reduce_sum(weights * tf.stack(losses))
    return (objective, losses[-1],
            self.method.metric(out.outputs, episode.query_labels), out)

  def _meta_gradients_impl(self, batch: Episode):
    """Meta-gradients averaged over a meta-batch `[B, ...]` of episodes."""
    variables = self.method.trainable_variables
    size = int(batch.support_images.shape[0])
    with self._ops(), tf.GradientTape() as tape:
      objectives, losses, metrics, traces = [], [], [], {}
      for b in range(size):
        objective, loss, metric, out = self._training_objective(
            tf.nest.map_structure(lambda t: t[b], batch))
        objectives.append(objective)
        losses.append(loss)
        metrics.append(metric)
        traces = out.traces
      objective = tf.add_n(objectives) / size
    grads = tape.gradient(objective, variables)
    stats = {"loss": tf.add_n(losses) / size,
             "metric": tf.add_n(metrics) / size}
    for name, values in traces.items():  # steps x [C] of the last episode.
      stats[f"trace/{name}_mean"] = _mean_over_steps(values)
      stats[f"trace/{name}_last"] = values[-1]
    return grads, stats

  def _replica_step(self, batch: Episode):
    """One meta-update from this replica's share of the meta-batch."""
    grads, stats = self._meta_gradients(batch)
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(grads, self.method.trainable_variables)]
    if self.replicas > 1:
      ctx = tf.distribute.get_replica_context()
      grads = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
      for k in ("loss", "metric"):
        stats[k] = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, stats[k])
    # Clip the meta-batch's mean gradient, as on one device.
    grads, norm = tf.clip_by_global_norm(grads, self.config.clip)
    # A diverged inner loop (inf/NaN loss) must not poison the meta-parameters:
    # such a meta-batch contributes a zero gradient (Adam's momentum still
    # moves the parameters) and is counted in `skipped`.
    finite = tf.math.is_finite(norm)
    grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
    stats["skipped"] = tf.cast(tf.logical_not(finite), tf.int32)
    if self.replicas > 1:
      # Keras optimizers sum the replicas' gradients; hand each a share.
      grads = [g / self.replicas for g in grads]
    self.optimizer.apply_gradients(zip(grads,
                                       self.method.trainable_variables))
    stats["grad_norm"] = norm
    stats["params_finite"] = self._all_finite()
    return stats

  def _all_finite(self) -> tf.Tensor:
    """Whether every meta-parameter is finite (a scalar bool)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                          for v in self.method.trainable_variables])

  def _train_step_impl(self, batch: Episode):
    stats = self.strategy.run(self._replica_step, args=(batch,))
    return tf.nest.map_structure(
        lambda t: self.strategy.experimental_local_results(t)[0], stats)

  def distribute(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Splits each meta-batch of `dataset` across the replicas."""
    if self.replicas == 1:
      return dataset
    if self.role.workers > 1:
      # Every worker makes the same meta-batches and keeps its own slice.
      share = self.config.meta_batch_size // self.role.workers

      def this_workers_slice(context):
        start = context.input_pipeline_id * share
        return dataset.map(lambda batch: tf.nest.map_structure(
            lambda t: t[start:start + share], batch))
      return self.strategy.distribute_datasets_from_function(
          this_workers_slice)
    return self.strategy.experimental_distribute_dataset(dataset)

  def _eval_step_impl(self, episode: Episode, transductive=True):
    with self._ops():
      loss, metric, result = self.episode_loss(episode, transductive)
    return self._eval_outputs(loss, metric, result)

  def _eval_step_both_impl(self, episode: Episode):
    """`eval_step` per query and transductive, from one adaptation."""
    with self._ops():
      results = self.method.run_both(episode.support_images,
                                     episode.support_labels,
                                     episode.query_images)
      return {queries: self._eval_outputs(
                  *self._query_loss_and_metric(episode, out), out)
              for queries, out in results.items()}

  def _eval_outputs(self, loss, metric, result):
    out = {"loss": loss, "metric": metric}
    for name, values in result.traces.items():
      out[f"{name}_tracked"] = tf.stack(
          [tf.gather(v, self.tracked) for v in values])
      out[f"{name}_mean"] = _mean_over_steps(values)
    return out

  # ------------------------------------------------------------ summaries --
  def writer(self, name: str):
    if name not in self._writers:
      self._writers[name] = (
          tf.summary.create_file_writer(str(self.logdir / name))
          if self.role.is_chief else tf.summary.create_noop_writer())
    return self._writers[name]

  # ----------------------------------------------------------- evaluation --
  def evaluate(self, split: str, num_episodes: int,
               transductive: bool = True, task=None) -> dict:
    """Evaluates the current meta-parameters on `num_episodes` of `split`,
    the queries predicted together (`transductive`, the papers' protocol)
    or each on its own (see `Method.run`); `task`: another task whose
    episodes fit the learner (a cross-domain test), else the run's.

    Returns a dict with `mean`, `ci95` (in report units: percent for
    accuracy), `loss`, per-episode `values` and `losses`, and the tracked
    traces (e.g. `input_gate_tracked`: `[episodes, steps, k]`) when the
    method has any.
    """
    queries = "transductive" if transductive else "per_query"
    return self._evaluate(
        split, num_episodes, task,
        lambda episode: {queries: self.eval_step(episode, transductive)}
    )[queries]

  def evaluate_both(self, split: str, num_episodes: int, task=None) -> dict:
    """`evaluate` per query and transductive on the same episodes, each
    adapted once (`Method.run_both`): `{"per_query": ..., "transductive":
    ...}`, each as `evaluate` returns it."""
    return self._evaluate(split, num_episodes, task, self.eval_step_both)

  def _evaluate(self, split, num_episodes, task, step) -> dict:
    """Runs `step` (episode -> {queries: eval outputs}) on the episodes and
    aggregates each entry as `evaluate` describes."""
    values, losses, traces = {}, {}, {}
    next_report = time.time() + 60
    for n, episode in enumerate(
        (task or self.task).eval_dataset(split, num_episodes), 1):
      for queries, out in step(episode).items():
        values.setdefault(queries, []).append(
            float(out["metric"]) * self.task.report_scale)
        losses.setdefault(queries, []).append(float(out["loss"]))
        for k, v in out.items():
          if k.endswith("_tracked") or k.endswith("_mean"):
            traces.setdefault(queries, {}).setdefault(k, []).append(v.numpy())
      if time.time() >= next_report:  # long evaluations show progress
        next_report = time.time() + 60
        logging.info("Evaluating on %s: %d of %d episodes, %s %s so far.",
                     split, n, num_episodes, self.task.metric,
                     ", ".join(f"{float(np.mean(v)):.4g}" + (
                         f" ({queries})" if len(values) > 1 else "")
                               for queries, v in values.items()))
    results = {}
    for queries in values:
      mean, ci95 = mean_and_ci95(values[queries])
      result = {"mean": mean, "ci95": ci95,
                "loss": float(np.mean(losses[queries])),
                "values": values[queries], "losses": losses[queries],
                "episodes": len(values[queries])}
      result.update({k: np.stack(v)
                     for k, v in traces.get(queries, {}).items()})
      results[queries] = result
    return results

  def _is_better(self, value: float) -> bool:
    if not math.isfinite(value):
      return False
    best = float(self.best_metric.numpy())
    if math.isnan(best):
      return True
    return value > best if self.task.higher_is_better else value < best

  def validate(self) -> dict:
    result = self.evaluate("val", self.config.val_episodes)
    step = int(self.episode.numpy())
    with self.writer("val").as_default(step=step):
      tf.summary.scalar("loss", result["loss"])
      tf.summary.scalar(self.task.metric, result["mean"])
      tf.summary.scalar(f"{self.task.metric}_ci95", result["ci95"])
    improved = self._is_better(result["mean"]) and bool(self._all_finite())
    if improved:
      self.best_metric.assign(result["mean"])
      self.best_episode.assign(step)
      path = _write_checkpoint(self.best_manager, step)
    logging.info("Validation at episode %d: %s %.4f +- %.4f%s", step,
                 self.task.metric, result["mean"], result["ci95"],
                 f" (best so far, saved to {path})" if improved else "")
    result["improved"] = improved
    return result

  # ------------------------------------------------------------- training --
  def restore_latest(self, for_training: bool = True) -> bool:
    """Restores the newest checkpoint, if any; returns whether it did.

    To resume training (`for_training`) it must hold everything training
    needs, the optimizer's state included; a test or an export needs only
    the run's counters (and reads the model from `best/`), so a checkpoint
    without the optimizer's state, such as a copy of a best checkpoint,
    serves them."""
    latest = (self.manager.latest_checkpoint if self.role.is_chief else
              tf.train.latest_checkpoint(str(self.logdir / "checkpoints")))
    if latest is None:
      return False
    status = self.checkpoint.restore(latest)
    if for_training:
      status.assert_existing_objects_matched()
    else:
      status.expect_partial()
    logging.info("%s %s at episode %d.",
                 "Resumed from" if for_training else "Read the counters of",
                 latest, int(self.episode.numpy()))
    return True

  def restore_best(self) -> None:
    """Loads the best validated meta-parameters (error if there are none)."""
    path = self.best_manager.latest_checkpoint
    if path is None:
      raise FileNotFoundError(
          f"No validated model in {self.logdir / 'best'}. Train first "
          "(--mode=train) with the same --logdir.")
    tf.train.Checkpoint(**self.method.trackables()).restore(
        path).expect_partial()
    logging.info("Loaded the best meta-learner from %s.", path)

  def save(self) -> str:
    """Writes a checkpoint; refuses non-finite meta-parameters (the last
    good checkpoint is then kept)."""
    if not bool(self._all_finite()):
      raise NonFiniteError(
          f"The meta-parameters are not finite at episode "
          f"{int(self.episode.numpy())}; not saving them. The last good "
          f"checkpoint, {self.manager.latest_checkpoint}, is kept.")
    return _write_checkpoint(self.manager, int(self.episode.numpy()))

  def fit(self, on_progress: Callable[[int, int, dict], None] | None = None,
          max_episodes: int | None = None,
          stop_requested: Callable[[], bool] | None = None) -> None:
    """Meta-trains until `config.episodes` (resuming if possible), or until
    a validation finds the best score `config.patience` episodes old.

    Args:
      on_progress: called after every meta-update with (episode, total,
        running stats); the command line draws its progress bar with it.
      max_episodes: stop after this many episodes in this call (the run can
        be continued later), e.g. to simulate an interruption in tests.
      stop_requested: polled between meta-updates (after the previous one's
        validation and checkpoint); when it returns True the trainer saves a
        checkpoint and raises KeyboardInterrupt. The command line's signal
        handlers set it, so that a checkpoint written on Ctrl-C or SIGTERM
        always pairs a meta-update with its episode counter.

    A KeyboardInterrupt raised from `on_progress` (after a meta-update and
    its counter) also saves; one raised inside a meta-update (before its
    counter advanced) does not, and the last checkpoint is kept instead.
    """
    c = self.config
    self.restore_latest()
    start = int(self.episode.numpy())
    if start >= c.episodes:
      logging.info("Training already finished (%d episodes).", start)
      return
    if self.out_of_patience(start):
      return
    stop = c.episodes if max_episodes is None else min(c.episodes,
                                                       start + max_episodes)
    logging.info("Meta-training episodes %d..%d of %d.", start, stop,
                 c.episodes)
    running, t0, skipped = {}, time.time(), 0
    # (episode, time) the training throughput is measured from: the last
    # summary, or the end of a validation or checkpoint (not counted).
    clock = (start, t0)
    dataset = self.distribute(self.task.train_dataset(start))
    consistent = True  # the counter matches the applied meta-updates
    try:
      for batch in dataset:
        before = int(self.episode.numpy())
        if before >= stop:
          break
        if stop_requested is not None and stop_requested():
          raise KeyboardInterrupt
        consistent = False
        stats = self.train_step(batch)
        if not bool(stats["params_finite"]):
          raise NonFiniteError(
              f"The meta-parameters became non-finite in the meta-update of "
              f"episode {before} (learning rate {self.current_lr():g}, clip "
              f"{c.clip:g}). Training stopped; the last good checkpoint, "
              f"{self.manager.latest_checkpoint}, is kept. Lower --lr or "
              "--clip and resume with the same --logdir.")
        if int(stats["skipped"]):
          skipped += 1
          logging.log_every_n_seconds(
              logging.WARNING, "Episode %d: non-finite meta-gradient, "
              "zeroed (%d so far).", 60, before, skipped)
        after = before + c.meta_batch_size
        self.episode.assign(after)
        consistent = True
        for k in ("loss", "metric"):
          v = float(stats[k])
          if math.isfinite(v):  # one diverged episode must not stick as NaN.
            running[k] = (v if k not in running else
                          0.95 * running[k] + 0.05 * v)
        if after // 10 != before // 10 or after >= stop:
          now = time.time()
          stats["episodes_per_second"] = (after - clock[0]) / max(
              now - clock[1], 1e-9)
          clock = (after, now)
          self._write_train_summaries(
              after, stats, histograms=after // 100 != before // 100 or
              after >= stop)
        if on_progress is not None:
          on_progress(after, c.episodes,
                      dict(running, seconds=time.time() - t0,
                           done=after - start, todo=stop - start))
        validating = after // c.val_every != before // c.val_every
        saving = after // c.checkpoint_every != before // c.checkpoint_every
        if validating:
          self.validate()
          if self.out_of_patience(after):
            break  # (saved below)
        if saving:
          self.save()
        if validating or saving:
          clock = (after, time.time())
    except KeyboardInterrupt:
      if not consistent:
        logging.warning(
            "Interrupted inside the meta-update of episode %d: not saved "
            "(the checkpoint would not match its episode counter); run the "
            "same command again to resume from %s.", int(self.episode.numpy()),
            self.manager.latest_checkpoint)
        raise
      path = self.save()
      logging.warning("Interrupted: saved %s; run the same command again "
                      "to resume.", path)
      raise
    if int(self.episode.numpy()) >= c.episodes and (
        c.episodes % c.val_every != 0 or self.best_manager.latest_checkpoint
        is None):
      self.validate()
    self.save()

  def out_of_patience(self, episode: int) -> bool:
    """Whether `config.patience` stops training at `episode`: the best
    validation score is that many episodes old (logged when it does)."""
    best = int(self.best_episode.numpy())
    if not self.config.patience or best < 0 or (
        episode - best < self.config.patience):
      return False
    logging.info("Stopped early at episode %d of %d: the best validation "
                 "score, at episode %d, is %d episodes old (--patience=%d).",
                 episode, self.config.episodes, best, episode - best,
                 self.config.patience)
    return True

  def _write_train_summaries(self, step: int, stats: dict,
                             histograms: bool) -> None:
    """Scalars; with `histograms` also the last step's traces (gates) and
    the method's own summaries (e.g. per-layer step sizes)."""
    with self.writer("train").as_default(step=step):
      tf.summary.scalar("loss", stats["loss"])
      tf.summary.scalar(self.task.metric,
                        stats["metric"] * self.task.report_scale)
      tf.summary.scalar("meta_grad_norm", stats["grad_norm"])
      tf.summary.scalar("learning_rate", self.current_lr())
      tf.summary.scalar("episodes_per_second", stats["episodes_per_second"])
      for key, value in stats.items():
        if key.startswith("trace/") and key.endswith("_mean"):
          tf.summary.scalar(f"{key[6:-5]}/mean", value)
        elif key.startswith("trace/") and histograms:
          tf.summary.histogram(f"{key[6:-5]}/last_step", value)
      if histograms:
        for name, value in self.method.summaries().items():
          if value.shape.rank == 0:
            tf.summary.scalar(name, value)
          else:
            tf.summary.histogram(name, value)

  def current_lr(self) -> float:
    """The learning rate of the next meta-update."""
    # Keras evaluates schedules; a constant rate may be a (mirrored) variable.
    return float(tf.convert_to_tensor(self.optimizer.learning_rate))

  def tracked_names(self) -> list[str]:
    """Readable names of the tracked trace coordinates."""
    return self.method.trace_names(self.tracked.numpy())

  def test(self, transductive: bool = True, task=None,
           name: str = "") -> dict:
    """Evaluates the current meta-parameters on the test episodes and writes
    the test summaries, the gate figure (Furrer et al., Meta-Learner LSTM for
    Few Shot Learning, App. B) of methods with gates, and
    `test_episodes.csv` (each test episode's metric and loss, in episode
    order, for paired comparisons between runs on the same episodes).

    `transductive=False`: the queries are predicted each on its own; the
    summaries go to `test_per_query/`, the episodes to
    `test_episodes_per_query.csv`, and no figures are drawn. `task`, `name`:
    test on another task's test episodes (cross-domain); `name` (e.g.
    '_mini_imagenet') is added to the file and summary names and no figures
    are drawn."""
    result = self.evaluate("test", self.config.test_episodes, transductive,
                           task)
    self._write_test(result, transductive, name)
    return result

  def test_both(self, task=None, name: str = "") -> dict:
    """`test` per query and transductive, on episodes adapted once each:
    `{"per_query": ..., "transductive": ...}`; writes what both tests
    write."""
    results = self.evaluate_both("test", self.config.test_episodes, task)
    for queries, result in results.items():
      self._write_test(result, queries == "transductive", name)
    return results

  def _write_test(self, result: dict, transductive: bool, name: str):
    """The test's episode CSV, summaries and (transductive, own task)
    figures."""
    rows = [f"episode,{self.task.metric},loss"] + [
        f"{i},{v:.6g},{l:.6g}"
        for i, (v, l) in enumerate(zip(result["values"], result["losses"]))]
    suffix = name + ("" if transductive else "_per_query")
    self.logdir.mkdir(parents=True, exist_ok=True)
    (self.logdir / f"test_episodes{suffix}.csv").write_text(
        "\n".join(rows) + "\n")
    step = int(self.episode.numpy())
    with self.writer(f"test{suffix}").as_default(step=step):
      tf.summary.scalar(self.task.metric, result["mean"])
      tf.summary.scalar(f"{self.task.metric}_ci95", result["ci95"])
      tf.summary.scalar("loss", result["loss"])
      if suffix:  # Figures belong to the run's own transductive test.
        return
      traces = {k[:-len("_tracked")]: v for k, v in result.items()
                if k.endswith("_tracked")}
      if traces and self.tracked.shape[0]:
        png = summaries.gate_figure(traces, self.tracked_names())
        (self.logdir / "gates.png").write_bytes(png)
        tf.summary.image("gates", summaries.png_to_image(png))
      if self.task.test_figure is not None:
        png = self.task.test_figure(self)
        (self.logdir / "predictions.png").write_bytes(png)
        tf.summary.image("predictions", summaries.png_to_image(png))
