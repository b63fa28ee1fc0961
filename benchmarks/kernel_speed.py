"""Time of the fused kernels alone, on random inputs.

  python benchmarks/kernel_speed.py [--coordinates=28485] [--threads=2]

Prints milliseconds per call of `MetaLstmStep` (forward) and
`MetaLstmStepGrad` (backward) for one step over `--coordinates` learner
parameters (default: the Omniglot 5-way Conv-4 learner, 28,485), and the
rate of vector work that implies; then, for the first two Conv-4 blocks on
84x84x3 images (`--block_images` images, default 80: an episode's 5 support
and 75 query images), the milliseconds of a block's convolution, batch norm,
ReLU and max-pool forward and backward with TensorFlow's ops and with the
fused block kernel, and of the convolution alone. Isolates the kernels from
the rest of the step when changing them; `training_speed.py` gives the
end-to-end figure.
"""

from absl import app
from absl import flags
import numpy as np
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

from metalstm_tf import kernels
from metalstm_tf.block_ops import block_tail
from metalstm_tf.learners.conv4 import fused_block_tail

import common

flags.DEFINE_integer("coordinates", 28485, "Learner parameters P.")
flags.DEFINE_integer("hidden", 20, "Hidden units of the meta-learner LSTM.")
flags.DEFINE_integer("inputs", 4, "Inputs per coordinate.")
flags.DEFINE_integer("calls", 50, "Timed calls per round.")
flags.DEFINE_integer("rounds", 5, "Rounds; the median is reported.")
flags.DEFINE_integer("block_images", 80, "Images per block call.")
flags.DEFINE_integer("threads", 2, "Intra-op threads (0: TensorFlow's "
                     "default).")
FLAGS = flags.FLAGS


def _inputs(p, hidden, n_in, rng):
  def rand(*shape, scale=1.0):
    return tf.constant(rng.normal(size=shape, scale=scale).astype(np.float32))

  g = 4 * hidden
  return [rand(n_in, p), rand(hidden, p, scale=0.3), rand(hidden, p),
          rand(n_in, g, scale=0.2), rand(hidden, g, scale=0.2), rand(g),
          rand(p, scale=0.05), rand(p, scale=0.01), tf.sigmoid(rand(p)),
          tf.sigmoid(rand(p)), rand(2, hidden + 2, scale=0.2), rand(2)]


def _block_ms(images, in_channels, size, tail, rng):
  """ms of one block's forward and backward (conv, then `tail`)."""
  x = tf.constant(rng.normal(size=(images, size, size, in_channels)),
                  tf.float32)
  kernel = tf.constant(rng.normal(size=(3, 3, in_channels, 32)) * 0.1,
                       tf.float32)
  vectors = [tf.zeros([32]), tf.ones([32]), tf.zeros([32])]

  @tf.function
  def step():
    params = [kernel] + vectors
    with tf.GradientTape() as tape:
      tape.watch(params)
      y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
      if tail is not None:
        y = tail(y, *vectors)
      loss = tf.reduce_sum(y * y)
    return tape.gradient(loss, params,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)

  return 1e3 * common.median_seconds_per_call(
      lambda _: step(), [None] * 10, FLAGS.rounds)


def main(argv):
  del argv
  if FLAGS.threads:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  module = kernels.library()
  if module is None:
    raise SystemExit("The fused kernel could not be built here (see the "
                     "warning above).")
  p, hidden, n_in = FLAGS.coordinates, FLAGS.hidden, FLAGS.inputs
  args = _inputs(p, hidden, n_in, np.random.default_rng(0))
  upstream = [tf.ones([hidden, p]) * 0.1, tf.ones([hidden, p]) * 0.1,
              tf.ones([p]), tf.ones([p]) * 0.1, tf.ones([p]) * 0.1]

  def ms_per_call(fn):
    return 1e3 * common.median_seconds_per_call(
        lambda _: fn(), [None] * FLAGS.calls, FLAGS.rounds)

  fwd = ms_per_call(lambda: module.meta_lstm_step(*args))
  bwd = ms_per_call(lambda: module.meta_lstm_step_grad(*args, *upstream))
  # Multiply-adds per coordinate: layer-1 gates (forward); recomputed gates,
  # d[x; h] and dW (backward).
  macs = 4 * hidden * (n_in + hidden)
  for name, ms, n in (("MetaLstmStep", fwd, macs), ("MetaLstmStepGrad", bwd,
                                                   3 * macs)):
    print(f"{name}: {ms:.3f} ms per call over {p} coordinates "
          f"({n * p / ms / 1e6:.1f} G multiply-adds/s in its products)")
  rng = np.random.default_rng(1)
  for block, (in_channels, size) in enumerate([(3, 84), (32, 42)], 1):
    times = {name: _block_ms(FLAGS.block_images, in_channels, size, tail,
                             rng)
             for name, tail in (("TensorFlow ops", block_tail),
                                ("fused kernel", fused_block_tail),
                                ("convolution alone", None))}
    print(f"block {block} ({FLAGS.block_images} x {size}x{size}x"
          f"{in_channels}), forward and backward: " +
          ", ".join(f"{name} {ms:.1f} ms" for name, ms in times.items()))


if __name__ == "__main__":
  app.run(main)
