"""Meta-train, test and export a few-shot learner (default: the
Meta-Learner LSTM). `metalstm` installed, `python main.py` in a checkout:

  metalstm --dataset=omniglot --shots=1 [--method=NAME]

meta-trains (resuming from the last checkpoint if the run was interrupted),
validates every --val_every episodes keeping the best model, tests it on
--test_episodes episodes, writes TensorBoard logs under --logdir and exports
a SavedModel to <logdir>/saved_model. Training records the run's complete
configuration in <logdir>/config.json; resuming, --mode=test and
--mode=export read it back, so a run is always evaluated as it was trained.
The last line printed is

  RESULT dataset=... ways=... shots=... split=test metric=... mean=... ci95=... episodes=... method=... queries=transductive

the papers' protocol; for learners with batch norm the line before it is the
same test with every query predicted on its own (queries=per_query).

  metalstm --mode=predict --saved_model=DIR --support_dir=S --query_dir=Q

classifies the images in Q after adapting to the class folders in S.
"""
# This module only wires flags to a configuration and the configuration to
# the library's components.

import json
import math
import pathlib
import shutil
import signal
import sys
import time

from metalstm import console
from metalstm.results import parse_result_line, result_line

from absl import app
from absl import logging

from metalstm import flags as metalstm_flags  # (defines the flags)

FLAGS = metalstm_flags.FLAGS


def _load_tensorflow() -> None:
  """Imports TensorFlow once the command line has parsed (importing the
  flags does not, so that a mistyped flag or --help answers at once).
  TensorFlow's C++ start-up notices (oneDNN, CUDA probing) stay out of the
  console unless --verbosity (or -v) is given."""
  with console.native_startup_notices(
      shown=any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:])):
    import tensorflow as tf
    tf.config.list_physical_devices("GPU")  # (its CUDA probing notices)


def cross_domain_task(config, learner_shape):
  """(task, (name, adapter description)) of --test_dataset, or (None, None)
  when it is not given or is the training dataset at its own shape."""
  import data_prep
  from data_prep import adapt
  from metalstm_tf import tasks
  name = FLAGS.test_dataset
  if name is None or (name == config.dataset and
                      data_prep.native_shape(name) == learner_shape):
    return None, None
  splits = data_prep.load_splits(name, FLAGS.data_dir, FLAGS.cache_dir,
                                 image_shape=learner_shape, splits=("test",))
  adapter = adapt.describe(data_prep.native_shape(name), learner_shape)
  return tasks.image_task(splits, config), (name, adapter)


class ExportError(OSError):
  """The SavedModel could not be written."""


def export(config, task, method, trainer, results: list[str]):
  """Writes <logdir>/saved_model with its metadata (`results`: the run's
  RESULT lines)."""
  from data_prep import conventions
  from metalstm_tf import export as export_lib
  from metalstm_tf import trainer as trainer_lib
  import tensorflow as tf
  classifier = task.metric == "accuracy"
  tests = {}
  for line in results:
    fields = parse_result_line(line)
    if "test_dataset" in fields:
      continue
    tests[fields.get("queries", "transductive")] = {
        "mean": float(fields["mean"]), "ci95": float(fields["ci95"]),
        "episodes": int(fields["episodes"])}
  best = float(trainer.best_metric.numpy())
  metadata = {
      "format": "metalstm-saved-model-1",
      "task": "classification" if classifier else "regression",
      "method": config.method, "dataset": config.dataset,
      "ways": config.way, "shots": config.shot,
      "input_convention": (conventions.BY_DATASET[config.dataset].as_dict()
                           if config.dataset in conventions.BY_DATASET else
                           {"description": "x in [-5, 5], one float per "
                                           "point"}),
      "command": metalstm_flags.command_line(config),
      "config": config.to_dict(),
      "metric": task.metric,
      "validation": {"best": None if math.isnan(best) else best,
                     "best_episode": int(trainer.best_episode.numpy()),
                     "episodes": config.val_episodes,
                     "queries": "transductive"},
      "test": tests,
      "trained_episodes": int(trainer.episode.numpy()),
  }
  try:
    path = export_lib.export_saved_model(
        trainer.logdir / "saved_model", method, task.learner.example_shape,
        label_dtype=tf.int32 if classifier else tf.float32,
        label_shape=() if classifier else (1,), metadata=metadata)
  except trainer_lib.WRITE_ERRORS as e:
    raise ExportError(
        f"Could not write the SavedModel in {trainer.logdir} "
        f"({trainer_lib.write_error_cause(e)}). The run's checkpoints are "
        "intact: free some disk space, then export it with the same command "
        "plus --mode=export.") from e
  logging.info("Exported the SavedModel to %s.", path)


def _model_dir() -> str:
  return FLAGS.saved_model or str(
      pathlib.Path(metalstm_flags.run_logdir()) / "saved_model")


def evaluate_saved_model() -> int:
  """--mode=evaluate: an exported model's accuracy on the fixed episodes of
  its dataset's --eval_split, per query and transductive."""
  import dataclasses
  import data_prep
  from metalstm_tf import predict as predict_lib
  from metalstm_tf import saved_model_eval, tasks
  from metalstm_tf.config import TrainConfig
  model_dir = _model_dir()
  try:
    model, metadata = predict_lib.load_model(model_dir)
    config = TrainConfig.from_dict(metadata["config"])
    if FLAGS["shots"].present:
      config = dataclasses.replace(config, shot=FLAGS.shots)
    split = FLAGS.eval_split
    flag = "test_episodes" if split == "test" else "val_episodes"
    count = FLAGS[flag].value or getattr(config, flag)
    task = tasks.image_task(
        data_prep.load_splits(config.dataset, FLAGS.data_dir,
                              FLAGS.cache_dir), config)
  except (predict_lib.PredictError, data_prep.DatasetError, ValueError) as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  logging.info("Evaluating %s on %d %s episodes of %s, %d-way %d-shot.",
               model_dir, count, split, config.dataset, config.way,
               config.shot)
  for queries in ("per_query", "transductive"):
    result = saved_model_eval.evaluate(
        model, task.eval_dataset(split, count), queries)
    print(result_line(config, "accuracy", split, result, queries) +
          f" model={model_dir}", flush=True)
  return 0


def predict() -> int:
  """--mode=predict: classify --query_dir after adapting to --support_dir."""
  from metalstm_tf import predict as predict_lib
  model_dir = _model_dir()
  missing = [f"--{n}" for n in ("support_dir", "query_dir")
             if not FLAGS[n].value]
  if missing:
    sys.stderr.write(f"error: --mode=predict needs {' and '.join(missing)}."
                     "\n")
    return 2
  try:
    model, metadata = predict_lib.load_model(model_dir)
    predictions, names = predict_lib.predict(
        model, metadata, FLAGS.support_dir, FLAGS.query_dir,
        transductive=FLAGS.transductive, invert=FLAGS.invert)
    predict_lib.write_csv(FLAGS.predictions, predictions, names)
  except predict_lib.PredictError as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  for p in predictions:
    print(f"{p.file}\t{p.label}\t{p.probability:.4f}", flush=True)
  logging.info("Wrote %d predictions to %s.", len(predictions),
               FLAGS.predictions)
  return 0


_RUN_LOCK = None  # this process's lock on its run directory


class _StopRequest:
  """Signal handler: the first SIGINT/SIGTERM asks the trainer to stop at
  the next meta-update boundary (it then saves and exits with 130); a second
  one stops at once, keeping the last checkpoint."""

  def __init__(self):
    self.requested = False

  def __call__(self, signum=None, frame=None):
    del frame
    if signum is None:  # polled by the trainer
      return self.requested
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    logging.warning("Stopping after the current meta-update (send the "
                    "signal again to stop at once, keeping the last "
                    "checkpoint).")
    return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _load_tensorflow()
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)
    console.quiet_other_libraries()
  if FLAGS.mode == "predict":  # Reads a SavedModel only; no run record.
    return predict()
  if FLAGS.mode == "evaluate":
    return evaluate_saved_model()
  import keras
  import data_prep
  from data_prep.atomic import atomic_write_text
  from metalstm_tf.config import TrainConfig
  from metalstm_tf.run_lock import RunLock, RunLocked
  from metalstm_tf import cluster
  from metalstm_tf.trainer import CheckpointWriteError
  mode = FLAGS.mode
  try:
    role = cluster.role()
  except ValueError as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  if role.workers > 1 and mode != "train":
    sys.stderr.write(f"error: --mode={mode} runs in one process; unset "
                     "TF_CONFIG (the cluster is for training).\n")
    return 2
  record = pathlib.Path(metalstm_flags.run_logdir()) / "config.json"
  if record.parent.exists() and not record.parent.is_dir():
    sys.stderr.write(f"error: --logdir {record.parent} is a file, not a "
                     "directory. Give a directory (it is created if "
                     "missing).\n")
    return 2
  created = not record.parent.exists()
  try:
    global _RUN_LOCK  # held until the process exits
    if role.is_chief:  # (the other workers write nothing there)
      _RUN_LOCK = RunLock(record.parent).acquire()
  except RunLocked as e:
    sys.stderr.write(f"error: {e}\n")
    return 1

  def refuse(message: str, status: int) -> int:
    """Says what is wrong; a run directory this process created and left
    empty (but for its lock) does not stay behind."""
    sys.stderr.write(f"error: {message}\n")
    if created and _RUN_LOCK is not None:
      _RUN_LOCK.release()
      if {p.name for p in record.parent.iterdir()} <= {".lock"}:
        shutil.rmtree(record.parent, ignore_errors=True)
    return status

  try:
    stored = (TrainConfig.from_dict(json.loads(record.read_text()))
              if record.is_file() else None)
    if stored is None and mode != "train":
      return refuse(f"No trained run in {record.parent}: {record.name} is "
                    "missing. Train first (--mode=train) or give the run's "
                    "--logdir.", 1)
    config = metalstm_flags.config_from_flags(stored=stored)
  except ValueError as e:
    return refuse(str(e), 2)
  keras.utils.set_random_seed(config.seed)
  try:
    from metalstm_tf.builder import build, make_strategy
    task, method, trainer = build(config, FLAGS.data_dir, FLAGS.cache_dir,
                                  make_strategy(FLAGS.num_replicas))
    if FLAGS.test_dataset and config.dataset == "sine":
      raise ValueError("--test_dataset needs an image dataset run, not sine.")
    # Checked before training: a test dataset that cannot fit fails now.
    cross_task, cross = (cross_domain_task(config, task.learner.example_shape)
                         if FLAGS.test_dataset else (None, None))
  except (data_prep.DatasetError, ValueError) as e:
    return refuse(str(e), 1)
  logdir = trainer.logdir
  logdir.mkdir(parents=True, exist_ok=True)
  if mode == "train" and role.is_chief:  # Only training writes the record.
    atomic_write_text(logdir / "config.json",
                      json.dumps(config.to_dict(), indent=2) + "\n")
  logging.info("Run directory: %s (tensorboard --logdir %s)", logdir, logdir)
  if mode == "train":
    # `kill` (SIGTERM) stops a run like Ctrl-C: checkpoint, then exit. SIGINT
    # gets the same handler explicitly, because a shell starts background
    # jobs with SIGINT ignored, and then `kill -INT` would be lost.
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
      trainer.fit(on_progress=console.ProgressBar(task.metric, task.report_scale),
                  stop_requested=stop)
    except KeyboardInterrupt:
      return 130  # The trainer saved a checkpoint and said how to resume.
    except (FloatingPointError, CheckpointWriteError) as e:
      sys.stderr.write(f"error: {e}\n")
      return 1
    finally:  # Testing and export stop at once again.
      signal.signal(signal.SIGTERM, signal.SIG_DFL)
      signal.signal(signal.SIGINT, signal.default_int_handler)
    if not role.is_chief:
      logging.info("%s: training done; the chief tests and exports the "
                   "model.", role.task)
      return 0
    if not FLAGS.final_test:
      logging.info("Training done; not tested (--nofinal_test). Test the "
                   "best model with --mode=test --logdir=%s.", logdir)
      return 0
  try:
    if mode != "train":  # The run's counters and best validation score:
      # The export's metadata, the test's step.
      trainer.restore_latest(for_training=False)
    trainer.restore_best()
  except FileNotFoundError as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  result_file = logdir / "result.txt"
  if mode == "export":  # The figures the run's training measured, if any.
    lines = (result_file.read_text().splitlines() if result_file.is_file()
             else [])
    try:
      export(config, task, method, trainer, lines)
    except ExportError as e:
      sys.stderr.write(f"error: {e}\n")
      return 1
    return 0
  # The run's own test split, then (--test_dataset) the other dataset's;
  # training always records its own. Each query on its own, then together.
  targets = [(None, None)] if cross is None or mode == "train" else []
  targets += [(cross_task, cross)] if cross is not None else []
  lines = []
  for test_task, test_cross in targets:
    name = f"_{test_cross[0]}" if test_cross else ""
    results = (trainer.test_both(task=test_task, name=name)
               if task.learner.batch_dependent else
               {"transductive": trainer.test(task=test_task, name=name)})
    for queries in ("per_query", "transductive"):
      if queries in results:
        lines.append(result_line(config, task.metric, "test",
                                 results[queries], queries, test_cross))
  status = 0
  if mode == "train" or cross is None:  # The run's own test of its best
    atomic_write_text(result_file, "\n".join(lines) + "\n")  # model.
  if mode == "train":
    try:
      export(config, task, method, trainer, lines)
    except ExportError as e:  # The test's figures stand; say so, then them.
      sys.stderr.write(f"error: {e}\n")
      status = 1
  with open(logdir / "results_history.txt", "a") as history:
    history.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} mode={mode} "
                  f"{' '.join(sys.argv[1:])}\n" +
                  "".join(f"  {line}\n" for line in lines))
  for line in lines:
    print(line, flush=True)
  return status


def run():
  """The `metalstm` console command (and `python main.py`): `--help`
  shows this module's text and the flags of `metalstm.flags`, whichever
  script started it."""
  sys.modules["__main__"].__doc__ = __doc__
  for flag in FLAGS.get_key_flags_for_module(metalstm_flags):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main)
