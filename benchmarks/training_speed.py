"""Meta-training speed, peak memory and overhead over the learner alone.

  python benchmarks/training_speed.py --data_dir=../shared/datasets

For Omniglot 5-way 1-shot and mini-ImageNet 5-way 1-shot (Ravi config: 32
filters, 12 inner steps of batch 5, 15 queries per class) it prints, for the
meta-learner's fused kernel (`fused`), TensorFlow ops (`ops`) and XLA:
  - meta-training episodes per second (steady state, real tf.data input),
  - the ratio of episode time to the time of the same learner forward and
    backward passes alone (12 support steps + 1 query pass, no meta-learner),
and at the end the process's peak resident memory. Reference: the widely
used PyTorch port does 2.8 and 1.2 episodes/s on these configurations on
this machine type; the target is 3x that.
"""

import itertools
import resource

from absl import app
from absl import flags
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

import common

flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("cache_dir", None, "Cache directory.")
flags.DEFINE_integer("steps", 40, "Timed meta-training steps per round.")
flags.DEFINE_integer("rounds", 1, "Timed rounds per setting; the median "
                     "round is reported (robust to a busy shared machine).")
flags.DEFINE_list("datasets", ["omniglot", "mini_imagenet"], "Datasets.")
flags.DEFINE_list("methods", ["meta_lstm"], "Methods to time (--method "
                  "names, or 'all'), each on the same Ravi configuration "
                  "(12 inner steps of batch 5) with its default options; "
                  "the fused kernel covers meta_lstm only, the others run "
                  "on TensorFlow ops in every mode.")
MODES = ("fused", "ops", "xla")
flags.DEFINE_list("modes", list(MODES), "Step variants to time: "
                  "fused (the default: fused meta-LSTM kernel), ops "
                  "(TensorFlow ops only), xla (XLA-compiled).")
FLAGS = flags.FLAGS

REFERENCE = {"omniglot": 2.8, "mini_imagenet": 1.2}


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


def main(argv):
  del argv
  from metalstm_tf import methods
  names = methods.names() if FLAGS.methods == ["all"] else FLAGS.methods
  for dataset, method, mode in itertools.product(FLAGS.datasets, names,
                                                 FLAGS.modes):
    if mode not in MODES:
      raise app.UsageError(f"--modes: unknown mode {mode!r}; use one of "
                           f"{', '.join(MODES)}.")
    config = common.ravi_1shot_config(
        dataset, f"/tmp/metalstm_bench_{dataset}_{mode}",
        xla=mode == "xla", fused_kernel=mode == "fused", method=method)
    task, _, trainer, batches = common.build_with_episodes(
        config, FLAGS.data_dir, FLAGS.cache_dir, FLAGS.steps)
    step_time = common.median_seconds_per_call(trainer.train_step, batches,
                                               FLAGS.rounds)
    learner_fn = _learner_only_fn(task.learner, task.learner.initial_theta(),
                                  config)
    single = [tf.nest.map_structure(lambda t: t[0], b) for b in batches]
    learner_time = common.median_seconds_per_call(learner_fn, single,
                                                  FLAGS.rounds)
    rate = 1.0 / step_time
    print(f"train {dataset} 5-way 1-shot {method} {mode}: {rate:.2f} "
          f"episodes/s "
          f"({rate / REFERENCE[dataset]:.1f}x the PyTorch port's "
          f"{REFERENCE[dataset]}); episode {step_time * 1e3:.0f} ms vs "
          f"learner fwd/bwd alone {learner_time * 1e3:.0f} ms: ratio "
          f"{step_time / learner_time:.2f}", flush=True)
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak resident memory: {peak_mb:.0f} MB", flush=True)


if __name__ == "__main__":
  app.run(main)
