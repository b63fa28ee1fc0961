"""--conv_precision=bfloat16: the Conv-4 learner's convolutions on bfloat16
inputs, everything else float32; a setting of the run, refused where there is
no convolution."""

from absl import flags as absl_flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf

from metalstm import flags as metalstm_flags
from metalstm_tf.learners import Conv4Learner


def _logits_and_grads(conv_precision, x, y):
  learner = Conv4Learner(5, (28, 28, 1), filters=8, seed=3,
                         conv_precision=conv_precision)
  params = [tf.identity(w) for w in learner.weights]
  with tf.GradientTape() as tape:
    tape.watch(params)
    logits = learner.forward(params, x)
    loss = learner.loss(logits, y)
  return logits, tape.gradient(loss, params)


def test_bfloat16_convolutions_round_the_inputs_and_return_float32():
  rng = np.random.default_rng(0)
  x = tf.constant(rng.random((10, 28, 28, 1)), tf.float32)
  y = tf.constant(np.arange(10) % 5, tf.int32)
  logits32, grads32 = _logits_and_grads("float32", x, y)
  logits16, grads16 = _logits_and_grads("bfloat16", x, y)
  assert logits16.dtype == tf.float32
  assert all(g.dtype == tf.float32 for g in grads16)
  # bfloat16 keeps 8 significant bits: close to float32, not equal to it.
  assert not np.array_equal(logits16, logits32)
  np.testing.assert_allclose(logits16, logits32, rtol=0.05, atol=0.05)
  # The gradients point the same way; batch norm's cancellations (its
  # gradient sums to zero over the batch) magnify the rounding in the early
  # layers, to relative errors of 10-30 % at 84x84 (RESULTS.md, Speed).
  for g16, g32 in zip(grads16, grads32):
    g16, g32 = np.ravel(g16), np.ravel(g32)
    if np.abs(g32).max() > 1e-6:  # (the conv biases' cancel in batch norm)
      cosine = g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32))
      assert 0.9 < cosine < 1 - 1e-6
  # A convolution of inputs and filters that bfloat16 holds exactly (few
  # significant bits) is the float32 one rounded to bfloat16: oneDNN sums
  # in float32 and rounds the output once.
  low = Conv4Learner(5, (28, 28, 1), filters=8, conv_precision="bfloat16")
  kernel = tf.cast(tf.cast(low.weights[0], tf.bfloat16), tf.float32)
  x_exact = tf.round(x * 8) / 8
  out = low._conv(x_exact, kernel).numpy()
  reference = tf.nn.conv2d(x_exact, kernel, strides=1, padding="SAME")
  np.testing.assert_array_equal(
      out, tf.cast(tf.cast(out, tf.bfloat16), tf.float32))
  np.testing.assert_allclose(out, reference, rtol=2**-8, atol=1e-30)


def test_a_learner_refuses_an_unknown_precision():
  with pytest.raises(ValueError, match="conv_precision must be 'float32' or "
                     "'bfloat16', got 'float16'"):
    Conv4Learner(5, (28, 28, 1), conv_precision="float16")


def _config(*argv, stored=None):
  with flagsaver.flagsaver():
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(["main.py", *argv])
    return metalstm_flags.config_from_flags(stored=stored)


def test_the_flag_is_part_of_the_run_and_refused_for_sine():
  assert _config("--dataset=mini_imagenet").conv_precision == "float32"
  stored = _config("--dataset=mini_imagenet", "--conv_precision=bfloat16")
  assert stored.conv_precision == "bfloat16"
  assert " --conv_precision=bfloat16" in metalstm_flags.command_line(stored)
  assert _config(stored=stored).conv_precision == "bfloat16"  # Resumed.
  with pytest.raises(metalstm_flags.ConfigMismatch,
                     match="--conv_precision=float32 contradicts"):
    _config("--conv_precision=float32", stored=stored)
  with pytest.raises(ValueError, match="--conv_precision applies to the "
                     "Conv-4 learner of the image datasets, not "
                     "--dataset=sine"):
    _config("--dataset=sine", "--conv_precision=bfloat16")
