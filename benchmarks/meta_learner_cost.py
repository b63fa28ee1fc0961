"""Where a meta-training episode's time goes: the meta-learner on its own.

  python benchmarks/meta_learner_cost.py

Times the coordinate-wise meta-learner alone (no learner: fixed random
gradients and losses stand in for the learner's) over `--params` coordinates
and `--steps` inner steps, forward and backward to its weights, as a
meta-training episode runs it; and, for comparison, the layer-1 LSTM's
matrix product [4H, 4 + H] x [4 + H, P] and its two backward products on
their own, in float32 and in bfloat16. The meta-learner is timed with its
fused step kernel (the default on CPU) and with TensorFlow ops only.
Defaults: the Omniglot Conv-4 learner (28,485 parameters), 12 steps, hidden
size 20.
"""

import time

from absl import app
from absl import flags
import numpy as np
import metalstm_tf  # noqa: F401  (before TensorFlow: its CPU-kernel setting)
import tensorflow as tf

from metalstm_tf.update_rules import MetaLSTM

flags.DEFINE_integer("params", 28485, "Learner parameters (coordinates).")
flags.DEFINE_integer("steps", 12, "Inner steps.")
flags.DEFINE_integer("hidden_size", 20, "Layer-1 hidden units.")
flags.DEFINE_integer("repeats", 20, "Timed repetitions.")
FLAGS = flags.FLAGS


def _ms(fn, repeats):
  fn()
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  tf.nest.map_structure(lambda t: t.numpy(), out)
  return (time.perf_counter() - start) / repeats * 1e3


def main(argv):
  del argv
  p, steps, hidden = FLAGS.params, FLAGS.steps, FLAGS.hidden_size
  rng = np.random.default_rng(0)
  rule = MetaLSTM(rng.normal(size=p).astype(np.float32) * 0.1,
                  hidden_size=hidden, seed=0)
  ops_only = MetaLSTM(rule.c0.numpy(), hidden_size=hidden, seed=0,
                      fused=False)
  grads = [tf.constant(rng.normal(size=p).astype(np.float32) * 0.01)
           for _ in range(steps)]
  losses = [tf.constant(1.5 - 0.05 * t) for t in range(steps)]
  weights = tf.constant(rng.normal(size=p).astype(np.float32))

  def meta_learner(rule):
    with tf.GradientTape() as tape:
      theta = rule.initial_theta()
      state = rule.init_state(theta)
      for t in range(steps):
        theta, state = rule.step(theta, grads[t], losses[t], state)
      loss = tf.reduce_sum(theta * weights)
    return tape.gradient(loss, rule.trainable_variables)

  for name, r in (("fused kernel", rule), ("TensorFlow ops", ops_only)):
    total = _ms(tf.function(lambda: meta_learner(r)), FLAGS.repeats)
    print(f"meta-learner alone ({name}), {p} coordinates x {steps} steps, "
          f"forward + backward: {total:.1f} ms ({total / steps:.2f} ms per "
          "step)", flush=True)
  features, gates = 4 + hidden, 4 * hidden
  for dtype in (tf.float32, tf.bfloat16):
    kernel = tf.cast(rng.normal(size=(features, gates)), dtype)
    x = tf.cast(rng.normal(size=(features, p)), dtype)
    dz = tf.cast(rng.normal(size=(gates, p)), dtype)
    products = {
        "forward z = W^T x": lambda: tf.matmul(kernel, x, transpose_a=True),
        "backward dx = W dz": lambda: tf.matmul(kernel, dz),
        "backward dW = x dz^T": lambda: tf.matmul(x, dz, transpose_b=True),
    }
    for name, product in products.items():
      ms = _ms(tf.function(product), FLAGS.repeats * 5)
      flops = 2 * features * gates * p
      print(f"layer-1 {name} [{dtype.name}]: {ms:.2f} ms per step "
            f"({flops / ms / 1e6:.1f} GFLOP/s)")


if __name__ == "__main__":
  app.run(main)
