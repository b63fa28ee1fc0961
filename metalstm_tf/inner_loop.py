"""The inner loop: a learner adapted to one task by an update rule.

Meta-gradients come from nesting: the caller records `adapt` under an outer
`tf.GradientTape`, and `adapt` computes each learner gradient with an inner
tape. First order (the paper): the loss and gradient fed to the update rule are
wrapped in `tf.stop_gradient`, so the meta-gradient flows only along the
parameter (cell-state) path and through the gates. Second order (Huisman,
2024, "Stateless Neural Meta-Learning using Second-Order Gradients"): they
are not, and the outer tape differentiates through the inner gradient
computation as well. In first order the learner's
support passes run on `tf.stop_gradient(theta)`, which gives the same loss and
gradient values and keeps the passes off the outer tape entirely.
"""

from typing import NamedTuple

import tensorflow as tf

from metalstm_tf.learners.base import Learner
from metalstm_tf.update_rules.base import UpdateRule


class AdaptResult(NamedTuple):
  """What an adaptation produced.

  Attributes:
    theta: adapted flat learner parameters `[P]`.
    support_losses: `[num_steps]` inner loss before each step.
    gates: gate name -> list of `num_steps` `[P]` values, one per step (empty
      if the rule has none; a list, so that callers that need a summary of
      them need not copy them into one `[num_steps, P]` tensor).
    trajectory: the parameters after each step, `num_steps` `[P]` tensors
      (the last is `theta`), if `adapt` was asked for them; else empty.
  """
  theta: tf.Tensor
  support_losses: tf.Tensor
  gates: dict
  trajectory: list


def inner_batches(num_support, batch_size: int, num_steps: int):
  """Start/stop indices of each step's mini-batch, cycling over the support.

  Args:
    num_support: support examples (already in random order): an int, or a
      scalar tensor where the support size is known only when run (then the
      indices are tensors too).
    batch_size: examples per step; clipped to `num_support`.
    num_steps: how many steps.
  """
  if isinstance(num_support, int):
    batch_size = min(batch_size, num_support)
    batches_per_pass = max(num_support // batch_size, 1)
  else:
    batch_size = tf.minimum(batch_size, num_support)
    batches_per_pass = tf.maximum(num_support // batch_size, 1)
  out = []
  for t in range(num_steps):
    start = (t % batches_per_pass) * batch_size
    out.append((start, start + batch_size))
  return out


def adapt(learner: Learner, rule: UpdateRule, support_x: tf.Tensor,
          support_y: tf.Tensor, num_steps: int, batch_size: int,
          second_order: bool = False,
          keep_trajectory: bool = False) -> AdaptResult:
  """Runs `num_steps` updates of `rule` on the support set.

  Args:
    learner: the learner (only its functional forward pass is used).
    rule: the update rule, holding c_0.
    support_x: `[way * shot, ...]` inputs (the size may be unknown until run
      time, as in a SavedModel taking any number of shots).
    support_y: `[way * shot]` targets.
    num_steps: inner updates (an unrolled Python loop: static, XLA-friendly).
    batch_size: examples per inner update.
    second_order: differentiate through the learner's gradients.
    keep_trajectory: also return the parameters after every step.
  """
  n = support_x.shape[0]
  n = int(n) if n is not None else tf.shape(support_x)[0]
  theta = rule.initial_theta()
  state = rule.init_state(theta)
  losses, gates, trajectory = [], {}, []
  for start, stop in inner_batches(n, batch_size, num_steps):
    x, y = support_x[start:stop], support_y[start:stop]
    # First order: the pass sees a copy of theta cut from the meta-parameters,
    # so the outer tape records none of it (nor holds its activations).
    theta_in = theta if second_order else tf.stop_gradient(theta)
    with tf.GradientTape() as tape:
      tape.watch(theta_in)
      loss = learner.loss(learner.apply_theta(theta_in, x), y)
    grad = tape.gradient(loss, theta_in)
    theta, state = rule.step(theta, grad, loss, state)
    losses.append(loss)
    if keep_trajectory:
      trajectory.append(theta)
    for name, value in rule.gates(state).items():
      gates.setdefault(name, []).append(value)
  return AdaptResult(theta=theta, support_losses=tf.stack(losses),
                     gates=gates, trajectory=trajectory)
