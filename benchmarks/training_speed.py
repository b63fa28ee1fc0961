"""Meta-training speed, peak memory and overhead over the learner alone,
beside the PyTorch port's step in the same run.

  pip install torch==2.13.0      # only for the comparison; not a dependency
  python benchmarks/training_speed.py --data_dir=../shared/datasets

For Omniglot and mini-ImageNet 5-way K-shot (Ravi config, `ravi.py`: 32
filters, 1-shot 12 inner steps of batch 5, 5-shot 8 of batch 25, 15 queries
per class) it prints, for each method and for the fused kernels (`fused`),
TensorFlow ops (`ops`) and XLA (`--modes=bf16`: the fused kernels with the
learner's convolutions in bfloat16):
  - meta-training episodes per second (steady state, real tf.data input),
  - the ratio of episode time to the time of the same learner forward and
    backward passes alone (the inner steps + 1 query pass, no meta-learner),
then, with `--pytorch` (the default), the PyTorch port's computation on the
same configuration (`pytorch_reference.py`, run as a child process right
after, so that PyTorch's memory is not counted here) and this project's
speed as a multiple of it, then a floor: the learner's convolutions of an
episode (`conv_flops.py`) at this machine's float32 matrix-product rate,
measured at the start (`--matmul_seconds`); and at the end the process's
peak resident memory.
"""

import itertools
import pathlib
import re
import resource
import subprocess
import sys

from absl import app
from absl import flags
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

import common
import conv_flops

flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("cache_dir", None, "Cache directory.")
flags.DEFINE_integer("steps", 40, "Timed meta-training steps per round.")
flags.DEFINE_integer("rounds", 1, "Timed rounds per setting; the median "
                     "round is reported (robust to a busy shared machine).")
flags.DEFINE_list("datasets", ["omniglot", "mini_imagenet"], "Datasets.")
flags.DEFINE_list("shots", ["1"], "Shots per class (1, 5: Ravi configs).")
flags.DEFINE_bool("pytorch", True, "Also time the PyTorch port's step on "
                  "each dataset and shot count (needs torch installed).")
flags.DEFINE_float("matmul_seconds", 5.0, "Seconds of float32 matrix "
                   "products that measure the machine's rate, for the floor "
                   "printed under each configuration (0: no floor).")
flags.DEFINE_integer("pytorch_threads", 2, "The PyTorch reference's "
                     "threads (this process uses TensorFlow's default).")
flags.DEFINE_list("methods", ["meta_lstm"], "Methods to time (--method "
                  "names, or 'all'), each on the same Ravi configuration "
                  "(--shots) with its default options; "
                  "the fused kernel covers meta_lstm only, the others run "
                  "on TensorFlow ops in every mode.")
MODES = ("fused", "bf16", "ops", "xla")
flags.DEFINE_list("modes", ["fused", "ops", "xla"], "Step variants to time: "
                  "fused (the default: fused meta-LSTM kernel), bf16 (fused, "
                  "and the learner's convolutions in bfloat16: "
                  "--conv_precision=bfloat16), ops (TensorFlow ops only), "
                  "xla (XLA-compiled).")
FLAGS = flags.FLAGS

REFERENCE = pathlib.Path(__file__).with_name("pytorch_reference.py")


def _pytorch_rate(dataset: str, shots: int) -> float | None:
  """The PyTorch reference's episodes/s here and now (None: no torch)."""
  cmd = [sys.executable, str(REFERENCE), f"--datasets={dataset}",
         f"--shots={shots}", f"--steps={FLAGS.steps}",
         f"--rounds={FLAGS.rounds}", f"--threads={FLAGS.pytorch_threads}"]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  found = re.search(r"([0-9.]+) episodes/s", proc.stdout)
  if proc.returncode or not found:
    print(f"pytorch reference {dataset} {shots}-shot: not run "
          f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:]})",
          flush=True)
    return None
  print(proc.stdout.strip(), flush=True)
  return float(found.group(1))


def _learner_only_fn(learner, theta0, config):
  """The learner's forward/backward passes of one episode, nothing else.

  Plain SGD moves the parameters between the inner steps, so that every pass
  is computed (with one fixed parameter tensor, TensorFlow's graph optimizer
  merges the 12 identical support passes into one).
  """

  @tf.function
  def run(episode):
    theta = theta0
    for _ in range(config.inner_steps):
      with tf.GradientTape() as tape:
        tape.watch(theta)
        loss = learner.loss(learner.apply_theta(theta, episode.support_images),
                            episode.support_labels)
      theta = theta - 0.01 * tape.gradient(loss, theta)
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = learner.loss(learner.apply_theta(theta, episode.query_images),
                          episode.query_labels)
    return tf.reduce_sum(tape.gradient(loss, theta))

  return run


def _print_floor(dataset, shots, config, example_shape, gflops, reference):
  """The learner's convolutions of one first-order training episode at the
  machine's float32 matrix-product rate: no implementation of this
  computation in float32 is faster here."""
  size, _, channels = example_shape
  flop = conv_flops.training_episode_flops(
      size, channels, config.filters, config.inner_steps,
      config.inner_batch_size, config.way * config.queries)
  line = (f"  floor {dataset} {shots}-shot: the learner's convolutions are "
          f"{flop / 1e9:.1f} GFLOP per episode, at least "
          f"{flop / gflops / 1e6:.0f} ms at this machine's float32 rate "
          f"({gflops:.0f} GFLOP/s)")
  if reference:
    line += f"; 6x the PyTorch port is {1e3 / reference / 6:.0f} ms"
  print(line, flush=True)


def main(argv):
  del argv
  from metalstm_tf import methods
  names = methods.names() if FLAGS.methods == ["all"] else FLAGS.methods
  for mode in FLAGS.modes:
    if mode not in MODES:
      raise app.UsageError(f"--modes: unknown mode {mode!r}; use one of "
                           f"{', '.join(MODES)}.")
  gflops = (common.matmul_gflops(FLAGS.matmul_seconds)
            if FLAGS.matmul_seconds > 0 else None)
  for dataset, shots in itertools.product(FLAGS.datasets, FLAGS.shots):
    shots, rates = int(shots), {}
    for method, mode in itertools.product(names, FLAGS.modes):
      config = common.ravi_config(
          dataset, f"/tmp/metalstm_bench_{dataset}_{mode}", shots=shots,
          xla=mode == "xla", fused_kernel=mode in ("fused", "bf16"),
          conv_precision="bfloat16" if mode == "bf16" else "float32",
          method=method)
      task, _, trainer, batches = common.build_with_episodes(
          config, FLAGS.data_dir, FLAGS.cache_dir, FLAGS.steps)
      step_time = common.median_seconds_per_call(trainer.train_step, batches,
                                                 FLAGS.rounds)
      learner_fn = _learner_only_fn(task.learner,
                                    task.learner.initial_theta(), config)
      single = [tf.nest.map_structure(lambda t: t[0], b) for b in batches]
      learner_time = common.median_seconds_per_call(learner_fn, single,
                                                    FLAGS.rounds)
      rates[method, mode] = 1.0 / step_time
      print(f"train {dataset} 5-way {shots}-shot {method} {mode}: "
            f"{1.0 / step_time:.2f} episodes/s; episode "
            f"{step_time * 1e3:.0f} ms vs learner fwd/bwd alone "
            f"{learner_time * 1e3:.0f} ms: ratio "
            f"{step_time / learner_time:.2f}", flush=True)
    reference = _pytorch_rate(dataset, shots) if FLAGS.pytorch else None
    for (method, mode), rate in rates.items() if reference else ():
      print(f"  {dataset} {shots}-shot {method} {mode}: "
            f"{rate / reference:.2f}x the PyTorch port in this run",
            flush=True)
    if gflops:
      _print_floor(dataset, shots, config, task.learner.example_shape,
                   gflops, reference)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak resident memory: {peak_mb:.0f} MB", flush=True)


if __name__ == "__main__":
  app.run(main)
