"""The learner interface: a network whose parameters are passed in.

The meta-learner owns the learner's parameters as one flat vector `theta`
(`[P]`, one row per coordinate); `ParamLayout` converts between that vector and
the list of shaped tensors the forward pass uses.
"""

import math

import keras
import tensorflow as tf

from metalstm_tf.kernels import FusedKernelUser


class ParamLayout:
  """Names and shapes of a learner's parameters, in a fixed order."""

  def __init__(self, names: list[str], shapes: list[tuple[int, ...]]):
    self.names = list(names)
    self.shapes = [tuple(int(d) for d in s) for s in shapes]
    self.sizes = [math.prod(s) for s in self.shapes]
    self.size = sum(self.sizes)

  def unflatten(self, theta: tf.Tensor) -> list[tf.Tensor]:
    """`[P]` -> list of tensors with `self.shapes`."""
    parts = tf.split(theta, self.sizes)
    return [tf.reshape(p, s) for p, s in zip(parts, self.shapes)]

  def flatten(self, params: list[tf.Tensor]) -> tf.Tensor:
    """List of tensors -> `[P]`."""
    return tf.concat([tf.reshape(p, [-1]) for p in params], axis=0)

  def offsets(self) -> dict[str, tuple[int, int]]:
    """Name -> [start, stop) range in the flat vector."""
    out, start = {}, 0
    for n, size in zip(self.names, self.sizes):
      out[n] = (start, start + size)
      start += size
    return out


class Learner(FusedKernelUser, keras.layers.Layer):
  """A learner with a functional forward pass.

  Subclasses create their weights in `__init__` (these are a fresh learner's
  initial parameters, used to initialise the meta-learner's c_0) and implement
  `forward(params, x, reference=None)` and `loss(outputs, y)`.

  `reference`: where a learner normalises with batch statistics (batch
  norm), by default they are those of `x` itself, so an example's output
  depends on the other examples of its batch (transductive). Given
  `reference` examples, the statistics are theirs instead (e.g. the support
  set's), and every row of `x` is predicted on its own. Learners without
  batch statistics ignore it.
  """

  # Whether an example's output depends on the other examples of its batch
  # (batch statistics); if not, per-query and transductive predictions agree.
  batch_dependent = False

  @property
  def layout(self) -> ParamLayout:
    return ParamLayout([w.path for w in self._param_weights()],
                       [w.shape for w in self._param_weights()])

  def _param_weights(self):
    return self.trainable_weights

  def initial_theta(self) -> tf.Tensor:
    """The learner's own weights as a flat `[P]` vector."""
    return self.layout.flatten([tf.convert_to_tensor(w) for w in
                                self._param_weights()])

  def forward(self, params: list[tf.Tensor], x: tf.Tensor,
              reference: tf.Tensor | None = None) -> tf.Tensor:
    raise NotImplementedError

  # The output layer is the last two parameters (kernel, bias); the others
  # are the body, whose output `features` returns.
  NUM_OUTPUT_PARAMS = 2

  @property
  def num_body_params(self) -> int:
    return len(self.layout.shapes) - self.NUM_OUTPUT_PARAMS

  @property
  def body_layout(self) -> ParamLayout:
    """The layout of the body's parameters (the first `num_body_params`)."""
    n = self.num_body_params
    return ParamLayout(self.layout.names[:n], self.layout.shapes[:n])

  def features(self, params: list[tf.Tensor], x: tf.Tensor,
               reference: tf.Tensor | None = None) -> tf.Tensor:
    """The body's output `[B, D]` under the body's `params` (the first
    `num_body_params`), the input of the output layer."""
    raise NotImplementedError

  def loss(self, outputs: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Scalar mean loss."""
    raise NotImplementedError

  def metric(self, outputs: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Scalar task metric (accuracy for classifiers, MSE for regressors)."""
    raise NotImplementedError

  def apply_theta(self, theta: tf.Tensor, x: tf.Tensor,
                  reference: tf.Tensor | None = None) -> tf.Tensor:
    """Forward pass with flat parameters `theta` `[P]`."""
    return self.forward(self.layout.unflatten(theta), x, reference)

  def call(self, x):
    return self.forward([tf.convert_to_tensor(w) for w in
                         self._param_weights()], x)
