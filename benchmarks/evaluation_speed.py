"""Test and validation time, and peak memory, of mini-ImageNet 5-shot.

  python benchmarks/evaluation_speed.py --data_dir=../shared/datasets

Builds the default mini-ImageNet 5-way 5-shot run (the paper's protocol: 8
inner steps on the 25 support images, 15 queries per class, augmentation)
and prints (`--conv_precision=bfloat16`: with the learner's convolutions in
bfloat16):
  - meta-training ms per episode (`--train_steps` steps, real tf.data input),
  - validation ms per episode (the trainer's evaluation of
    `--val_episodes` episodes, as every validation does),
  - the wall time of the protocol's 600-episode test: transductive alone
    (`Trainer.evaluate`, the papers' figure), and both per query and
    transductive from one adaptation per episode (`Trainer.evaluate_both`,
    what a run's test does),
  - the process's peak resident memory, and its parts at the end: anonymous
    memory (the program's own) and file pages (the memory-mapped dataset
    arrays, which the kernel may drop and re-read),
  - a floor under the test's time: the convolution FLOPs of a test episode
    (`conv_flops.py`) over this machine's float32 matrix-product rate, as
    measured here on all cores (`--matmul_seconds`).
"""

import pathlib
import resource
import tempfile
import time

from absl import app
from absl import flags
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

from metalstm_tf import builder
from metalstm_tf.config import CONV_PRECISIONS, TrainConfig

import common
import conv_flops

flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("cache_dir", None, "Cache directory.")
flags.DEFINE_integer("train_steps", 20, "Timed meta-training steps.")
flags.DEFINE_integer("val_episodes", 100, "Validation episodes timed.")
flags.DEFINE_integer("test_episodes", 600, "Test episodes timed.")
flags.DEFINE_enum("conv_precision", "float32", list(CONV_PRECISIONS),
                  "The learner's convolutions (--conv_precision).")
flags.DEFINE_float("matmul_seconds", 5.0, "Seconds of float32 matrix "
                   "products that measure the machine's compute rate.")
FLAGS = flags.FLAGS


def _memory_mb() -> dict[str, float]:
  """Peak resident memory, and the current anonymous and file-backed
  resident memory (Linux), in MB."""
  out = {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  status = pathlib.Path("/proc/self/status")
  if status.is_file():
    for line in status.read_text().splitlines():
      key, _, value = line.partition(":")
      if key in ("RssAnon", "RssFile"):
        out[key] = int(value.split()[0]) / 1024
  return out


def main(argv):
  del argv
  config = TrainConfig(dataset="mini_imagenet", way=5, shot=5, queries=15,
                       inner_steps=8, inner_batch_size=25, filters=32,
                       augment=True, val_episodes=FLAGS.val_episodes,
                       test_episodes=FLAGS.test_episodes,
                       conv_precision=FLAGS.conv_precision,
                       logdir=tempfile.mkdtemp(prefix="metalstm_eval_"))
  task, _, trainer = builder.build(config, FLAGS.data_dir, FLAGS.cache_dir)
  batches = iter(task.train_dataset(0))
  trainer.train_step(next(batches))  # trace
  start = time.perf_counter()
  for _ in range(FLAGS.train_steps):
    out = trainer.train_step(next(batches))
  tf.nest.map_structure(lambda t: t.numpy(), out)
  train_ms = (time.perf_counter() - start) / FLAGS.train_steps * 1e3
  trainer.evaluate("val", 2)  # trace
  start = time.perf_counter()
  trainer.evaluate("val", FLAGS.val_episodes)
  val_ms = (time.perf_counter() - start) / FLAGS.val_episodes * 1e3
  trainer.evaluate_both("val", 2)  # trace
  times = {}
  for name, evaluate in (("transductive", trainer.evaluate),
                         ("both", trainer.evaluate_both)):
    start = time.perf_counter()
    evaluate("test", FLAGS.test_episodes)
    times[name] = time.perf_counter() - start
  memory = _memory_mb()
  gflops = common.matmul_gflops(FLAGS.matmul_seconds)
  size, _, channels = task.learner.example_shape
  episode = conv_flops.evaluation_episode_flops(
      size, channels, config.filters, config.inner_steps,
      config.inner_batch_size, config.way * config.queries) / 1e9
  print(f"mini-ImageNet 5-way 5-shot, {FLAGS.conv_precision} "
        f"convolutions: meta-training {train_ms:.0f} ms per "
        f"episode ({1e3 / train_ms:.2f} episodes/s); validation "
        f"{val_ms:.0f} ms per episode ({val_ms / train_ms:.2f}x training)",
        flush=True)
  print(f"test of {FLAGS.test_episodes} episodes: {times['transductive']:.1f}"
        f" s transductive; {times['both']:.1f} s per query and transductive "
        "(a run's test)", flush=True)
  print(f"peak resident memory: {memory['peak']:.0f} MB (at the end: "
        f"anonymous {memory.get('RssAnon', float('nan')):.0f} MB, file pages "
        f"of the memory-mapped arrays {memory.get('RssFile', float('nan')):.0f}"
        " MB)", flush=True)
  print(f"floor: a test episode's convolutions are {episode:.1f} GFLOP; at "
        f"this machine's float32 matrix-product rate ({gflops:.0f} GFLOP/s, "
        f"all cores) {FLAGS.test_episodes} episodes need at least "
        f"{FLAGS.test_episodes * episode / gflops:.0f} s per mode",
        flush=True)


if __name__ == "__main__":
  app.run(main)
