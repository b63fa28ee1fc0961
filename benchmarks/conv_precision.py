"""bfloat16 convolutions (`--conv_precision=bfloat16`) against float32: the
time of each Conv-4 convolution with its gradients, and how far the
learner's gradient moves.

  python benchmarks/conv_precision.py                 # 84x84x3, both cores
  taskset -c 1 python benchmarks/conv_precision.py --threads=1

For each convolution of the 32-filter Conv-4 learner on `--size` images
(batches of `--batches`: 5 and 25 are the inner batches of the 1- and 5-shot
Ravi configurations, 75 the queries), the time of its forward pass, filter
gradient and input gradient in float32 and in bfloat16 (median of
`--rounds`). Then, for the learner's cross-entropy on one batch of
`--grad_batch` images (uniform noise in [0, 1], labels cycling over 5
classes) at its initial parameters, the relative error |g16 - g32| / |g32|
and the cosine of each parameter's gradient. bfloat16 keeps 8 significant
bits of the activations and of their gradients; behind batch norm the
filter gradients are small differences of large sums (batch norm's gradient
sums to zero over the batch), in which that rounding weighs more.
"""

import time

from absl import app
from absl import flags
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import numpy as np
import tensorflow as tf

from metalstm_tf.learners import Conv4Learner

flags.DEFINE_integer("size", 84, "Image size (84: mini-ImageNet).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_list("batches", ["5", "25", "75"], "Batch sizes to time.")
flags.DEFINE_integer("grad_batch", 25, "Images of the gradient comparison.")
flags.DEFINE_integer("rounds", 5, "Timed rounds of 10 calls; the median.")
flags.DEFINE_integer("threads", 0, "TensorFlow's intra-op threads (0: its "
                     "default, every core).")
FLAGS = flags.FLAGS
FILTERS = 32


def _conv_seconds(dtype, batch, size, c_in):
  """Median seconds of one convolution's forward pass and both gradients."""
  rng = np.random.default_rng(0)
  x = tf.cast(rng.random((batch, size, size, c_in)), dtype)
  w = tf.cast(rng.normal(size=(3, 3, c_in, FILTERS)) * 0.1, dtype)

  @tf.function
  def step(x, w):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      y = tf.nn.conv2d(x, w, strides=1, padding="SAME")
      loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    return tape.gradient(loss, [x, w])

  step(x, w)[0].numpy()
  times = []
  for _ in range(FLAGS.rounds):
    start = time.perf_counter()
    for _ in range(10):
      out = step(x, w)
    out[0].numpy()
    times.append((time.perf_counter() - start) / 10)
  return float(np.median(times))


def _gradients(conv_precision, x, y):
  learner = Conv4Learner(5, x.shape[1:], filters=FILTERS, seed=0,
                         conv_precision=conv_precision)
  params = [tf.identity(w) for w in learner.weights]
  with tf.GradientTape() as tape:
    tape.watch(params)
    loss = learner.loss(learner.forward(params, x), y)
  return [w.name for w in learner.weights], tape.gradient(loss, params)


def main(argv):
  del argv
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  print(f"convolutions of the Conv-4 learner ({FILTERS} filters), forward "
        "and both gradients, ms: float32 / bfloat16 (ratio)")
  for batch in (int(b) for b in FLAGS.batches):
    size, c_in, row = FLAGS.size, FLAGS.channels, []
    total32 = total16 = 0.0
    for layer in range(4):
      t32 = _conv_seconds(tf.float32, batch, size, c_in)
      t16 = _conv_seconds(tf.bfloat16, batch, size, c_in)
      total32, total16 = total32 + t32, total16 + t16
      row.append(f"{size}x{size}x{c_in}: {t32 * 1e3:.1f} / {t16 * 1e3:.1f} "
                 f"({t32 / t16:.2f}x)")
      size, c_in = size // 2, FILTERS
    print(f"  batch {batch}: " + "; ".join(row) +
          f"; all four {total32 * 1e3:.1f} / {total16 * 1e3:.1f} "
          f"({total32 / total16:.2f}x)", flush=True)
  rng = np.random.default_rng(1)
  x = tf.constant(rng.random((FLAGS.grad_batch, FLAGS.size, FLAGS.size,
                              FLAGS.channels)), tf.float32)
  y = tf.constant(np.arange(FLAGS.grad_batch) % 5, tf.int32)
  names, g32 = _gradients("float32", x, y)
  _, g16 = _gradients("bfloat16", x, y)
  print(f"the learner's gradient on {FLAGS.grad_batch} images, bfloat16 "
        "against float32: relative error, cosine")
  for name, a, b in zip(names, g32, g16):
    a, b = np.ravel(a), np.ravel(b)
    norm = np.linalg.norm(a)
    if norm < 1e-6:
      print(f"  {name}: zero in float32 (cancels in batch norm)")
      continue
    print(f"  {name}: {np.linalg.norm(b - a) / norm:.3f}, "
          f"{a @ b / (norm * np.linalg.norm(b)):.4f}")


if __name__ == "__main__":
  app.run(main)
