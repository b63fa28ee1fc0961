"""Where a meta-training step's time goes, by TensorFlow op type.

  python benchmarks/step_profile.py --data_dir=../shared/datasets

Runs `--steps` meta-training steps of the meta-learner LSTM, 5-way K-shot
(Ravi config: 32 filters; 1-shot 12 inner steps of batch 5, 5-shot 8 of
batch 25), under the TensorFlow profiler and prints, for the op types that
take the most time, their total duration per step (summed over TensorFlow's
executor threads, so the total exceeds the wall time when ops run in
parallel) and how many of them run per step. The profiler adds overhead:
the wall time per step printed here is above `training_speed.py`'s;
`--noprofile` prints the wall time alone, without it.

  python benchmarks/step_profile.py --dataset=mini_imagenet --shots=5 \
      --second_order --nopreprocess     # Huisman's second-order variant
"""

import collections
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import common
from metalstm_tf.config import CONV_PRECISIONS
from metalstm_tf.methods.meta_lstm import MetaLSTMOptions

flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("cache_dir", None, "Cache directory.")
flags.DEFINE_enum("dataset", "omniglot", ["omniglot", "mini_imagenet"],
                  "Dataset.")
flags.DEFINE_integer("shots", 1, "Support examples per class.")
flags.DEFINE_bool("second_order", False, "Second-order meta-gradients.")
flags.DEFINE_bool("preprocess", True, "Log/sign-preprocess the meta-learner's "
                  "inputs (--nopreprocess: raw).")
flags.DEFINE_enum("conv_precision", "float32", list(CONV_PRECISIONS),
                  "The learner's convolutions (--conv_precision).")
flags.DEFINE_bool("profile", True, "Run under the profiler and print the op "
                  "types (--noprofile: the wall time per step alone).")
flags.DEFINE_integer("steps", 10, "Profiled meta-training steps.")
flags.DEFINE_integer("top", 25, "Op types to print.")
FLAGS = flags.FLAGS

# Profiler events that are not TensorFlow ops (executor and Python scopes).
_NOT_OPS = {"Process", "ParallelFor", "Run", "EagerExecute",
            "EagerKernelExecute", "TFE_Py_ExecuteCancelable"}


def _op_times(logdir: pathlib.Path, steps: int):
  """{op type: (ms per step, calls per step)} from the profile's xplane."""
  files = sorted(logdir.rglob("*.xplane.pb"))
  if not files:
    raise RuntimeError(f"the profiler wrote no trace under {logdir}")
  space = xplane_pb2.XSpace()
  space.ParseFromString(files[-1].read_bytes())
  total, calls = collections.Counter(), collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = names.get(event.metadata_id, "?").split(":")[-1]
        if name not in _NOT_OPS:
          total[name] += event.duration_ps
          calls[name] += 1
  return {k: (v / 1e9 / steps, calls[k] / steps)
          for k, v in total.most_common()}


def main(argv):
  del argv
  options = MetaLSTMOptions(second_order=FLAGS.second_order,
                            preprocess=FLAGS.preprocess)
  config = common.ravi_config(
      FLAGS.dataset, tempfile.mkdtemp(prefix="metalstm_profile_"),
      shots=FLAGS.shots, xla=False, method_options=options,
      conv_precision=FLAGS.conv_precision)
  _, _, trainer, batches = common.build_with_episodes(
      config, FLAGS.data_dir, FLAGS.cache_dir, FLAGS.steps)
  for b in batches[:3]:  # Trace and warm up.
    trainer.train_step(b)
  if FLAGS.profile:
    logdir = pathlib.Path(tempfile.mkdtemp(prefix="metalstm_trace_"))
    tf.profiler.experimental.start(str(logdir))
  start = time.perf_counter()
  for b in batches:
    out = trainer.train_step(b)
  tf.nest.map_structure(lambda t: t.numpy(), out)
  wall = (time.perf_counter() - start) / FLAGS.steps
  order = "second" if FLAGS.second_order else "first"
  setting = (f"{FLAGS.dataset} 5-way {FLAGS.shots}-shot, {order} order, "
             f"{'preprocessed' if FLAGS.preprocess else 'raw'} inputs, "
             f"{FLAGS.conv_precision} convolutions")
  if not FLAGS.profile:
    print(f"{setting}: {wall * 1e3:.0f} ms per step (wall)")
    return
  tf.profiler.experimental.stop()
  print(f"{setting}, under the profiler: {wall * 1e3:.0f} ms per step (wall)")
  for name, (ms, n) in list(_op_times(logdir, FLAGS.steps).items())[
      :FLAGS.top]:
    print(f"{ms:8.2f} ms per step  {n:6.1f} calls per step  {name}")


if __name__ == "__main__":
  app.run(main)
