"""The two-layer coordinate-wise meta-learner LSTM (Ravi & Larochelle 2017).

Layer 1 is a standard LSTM (input 4, hidden `hidden_size`) over the
preprocessed loss and gradient of every coordinate. Layer 2 is the meta cell
whose cell state is the learner's parameters (Ravi & Larochelle, 2017, Eq. 2):

    i_t = sigma(W_I [h_t, theta_{t-1}, i_{t-1}] + b_I)
    f_t = sigma(W_F [h_t, theta_{t-1}, f_{t-1}] + b_F)
    theta_t = f_t * theta_{t-1} - i_t * grad_t

All rows (coordinates) share the weights. Initialisation: weights
U(-0.01, 0.01), b_F ~ U(4, 6), b_I ~ U(-5, -4), c_0 = a fresh learner.

The two layers run either as TensorFlow ops or, by default on a CPU, as one
fused C++ kernel per step and direction (`metalstm_tf/kernels`: `MetaLstmStep`
and its gradient), which computes the same function (to float rounding)
faster than the dozens of small ops; the TensorFlow ops are used where the
kernel is unavailable and whenever a graph must contain only standard ops
(XLA, SavedModels: see `UpdateRule.standard_ops`).
"""

from typing import NamedTuple

import tensorflow as tf

from metalstm_tf import kernels
from metalstm_tf.update_rules.base import per_layer
from metalstm_tf.update_rules.coordinate import CoordinateLSTMRule


class MetaLSTMState(NamedTuple):
  """Per-coordinate state of the P learner coordinates.

  The layer-1 tensors are stored feature-major (`[hidden, P]`): the gate
  pre-activations then split along the first axis, which TensorFlow does
  without copying, and the matmuls have the long axis P as their free
  dimension.
  """
  h: tf.Tensor  # [hidden, P] layer-1 hidden state.
  c: tf.Tensor  # [hidden, P] layer-1 cell state.
  f: tf.Tensor  # [P] previous forget gate.
  i: tf.Tensor  # [P] previous input gate.


class MetaLSTM(CoordinateLSTMRule):
  """The meta-learner LSTM update rule.

  Args:
    initial_theta: `[P]` initial learner parameters (c_0's initial value).
    hidden_size: layer-1 hidden units (20 in the paper).
    preprocess: feed log/sign preprocessed inputs (True, the paper) or the raw
      loss and gradient (the variant of Huisman et al., Stateless Neural
      Meta-Learning using Second-Order Gradients).
    seed: seed of the initial meta-weights.
    fused: run the step with the fused CPU kernel when it is available.
    input_gate_scale: the step is `theta_t = f_t * theta_{t-1} -
      input_gate_scale * i_t * grad_t`, so the learned learning rate ranges
      over (0, input_gate_scale); 1 is the paper's cell. The gates and their
      recurrent inputs stay sigmoids in (0, 1).
    forget_toward_init: the forget gate decays the parameters toward this
      episode's start, the meta-learned initialisation theta_0, instead of
      toward zero: `theta_t = theta_0 + f_t * (theta_{t-1} - theta_0) -
      input_gate_scale * i_t * grad_t`, and the gates see the displacement
      `theta_{t-1} - theta_0` where the paper's cell feeds them `theta_{t-1}`.
      It is the paper's cell run on the displacement, so a forget gate below
      1 acts as a learned pull toward the prior instead of weight decay.
    per_parameter_lr: learn a positive step-size multiplier `alpha` for each
      of the P learner parameters (Meta-SGD's per-parameter learning rate,
      stored as `log_alpha`, initially 0): the step subtracts
      `input_gate_scale * alpha * i_t * grad_t`. The shared gates cannot tell
      one coordinate from another except by its value, gradient and loss;
      `alpha` lets the learned step size differ by parameter (a layer's
      biases from its weights, say), like c_0 it is one number per
      parameter and makes no assumption about the learner.
  """

  def __init__(self, initial_theta, hidden_size: int = 20,
               preprocess: bool = True, seed: int | None = None,
               fused: bool = True, input_gate_scale: float = 1.0,
               forget_toward_init: bool = False,
               per_parameter_lr: bool = False, **kwargs):
    if not input_gate_scale > 0:
      raise ValueError("input_gate_scale must be positive, got "
                       f"{input_gate_scale!r}.")
    super().__init__(initial_theta, hidden_size=hidden_size,
                     preprocess=preprocess, seed=seed, **kwargs)
    self.input_gate_scale = float(input_gate_scale)
    self.forget_toward_init = bool(forget_toward_init)
    self.fused = fused
    self.log_alpha = None
    if per_parameter_lr:
      self.log_alpha = self.add_weight(shape=(self.num_params,),
                                       initializer="zeros", name="log_alpha")
    self.w_input = self.gate_weight("input")
    self.w_forget = self.gate_weight("forget")
    self.b_input = self.gate_bias("input", -5.0, -4.0)
    self.b_forget = self.gate_bias("forget", 4.0, 6.0)
    self.built = True

  def init_state(self, theta):
    zeros_h = self.zero_hidden(theta)
    zeros = tf.zeros_like(theta)
    return MetaLSTMState(h=zeros_h, c=zeros_h, f=zeros, i=zeros)

  @property
  def per_parameter_lr(self) -> bool:
    return self.log_alpha is not None

  def step_scale(self) -> tf.Tensor | None:
    """`input_gate_scale * alpha`, `[P]`, or None with neither option."""
    if self.log_alpha is None:
      return None if self.input_gate_scale == 1.0 else tf.constant(
          self.input_gate_scale)
    return self.input_gate_scale * tf.exp(self.log_alpha)

  def _cell_grad(self, grad):
    """The gradient the cell subtracts, scaled by `input_gate_scale` and,
    with `per_parameter_lr`, by each parameter's `alpha`."""
    scale = self.step_scale()
    return grad if scale is None else grad * scale

  def _fused_step(self, module, theta, grad, loss, state: MetaLSTMState):
    """Both layers as one fused kernel call."""
    loss_in, grad_in = self._inputs(grad, loss, module)
    kernel = tf.convert_to_tensor(self.lstm_kernel)
    # The loss rows of the kernel act on a per-step constant: fold them into
    # the bias, so the kernel sees only per-coordinate inputs.
    n_loss, n_in = loss_in.shape[0], loss_in.shape[0] + grad_in.shape[0]
    bias = self.lstm_bias + tf.linalg.matvec(kernel[:n_loss], loss_in,
                                             transpose_a=True)
    w2 = tf.stack([tf.convert_to_tensor(self.w_forget)[:, 0],
                   tf.convert_to_tensor(self.w_input)[:, 0]])
    b2 = tf.concat([self.b_forget, self.b_input], axis=0)
    h, c, new_theta, f, i = module.meta_lstm_step(
        grad_in, state.h, state.c, kernel[n_loss:n_in], kernel[n_in:], bias,
        theta, self._cell_grad(grad), state.f, state.i, w2, b2)
    return new_theta, MetaLSTMState(h=h, c=c, f=f, i=i)

  def step(self, theta, grad, loss, state: MetaLSTMState):
    if not self.forget_toward_init:
      return self._cell_step(theta, grad, loss, state)
    anchor = self.initial_theta()
    delta, state = self._cell_step(theta - anchor, grad, loss, state)
    return anchor + delta, state

  def _cell_step(self, theta, grad, loss, state: MetaLSTMState):
    """Both layers on the cell state `theta` (the parameters, or their
    displacement from theta_0 with `forget_toward_init`)."""
    module = kernels.library() if self.fused else None
    if module is not None:
      return self._fused_step(module, theta, grad, loss, state)
    h, c = self.layer1(grad, loss, state.h, state.c)
    # Layer 2: W [h, theta, gate] as one [2, hidden] x [hidden, P] product
    # for both gates plus per-coordinate terms (no [P, hidden + 2] concat).
    n = self.hidden_size
    w_f = tf.convert_to_tensor(self.w_forget)[:, 0]
    w_i = tf.convert_to_tensor(self.w_input)[:, 0]
    zh = tf.matmul(tf.stack([w_f[:n], w_i[:n]]), h)  # [2, P]
    f = tf.sigmoid(zh[0] + w_f[n] * theta + w_f[n + 1] * state.f +
                   self.b_forget)
    i = tf.sigmoid(zh[1] + w_i[n] * theta + w_i[n + 1] * state.i +
                   self.b_input)
    new_theta = f * theta - i * self._cell_grad(grad)
    return new_theta, MetaLSTMState(h=h, c=c, f=f, i=i)

  has_gates = True

  @staticmethod
  def gates(state: MetaLSTMState):
    return {"input_gate": state.i, "forget_gate": state.f}

  def summaries(self, layout):
    if self.log_alpha is None:
      return {}
    return per_layer("alpha", tf.exp(tf.convert_to_tensor(self.log_alpha)),
                     layout)
