"""The fused meta-LSTM kernel: same values and gradients as TensorFlow's ops,
clear shape errors, a working fallback, and SavedModels free of it."""

import math
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from metalstm_tf import inner_loop, kernels
from metalstm_tf.learners import Conv4Learner, MLPLearner
from metalstm_tf.preprocess import log_and_sign
from metalstm_tf.update_rules import MetaLSTM


@pytest.fixture(scope="module")
def module():
  # CI machines have a C++ compiler: the kernel must build there, not be
  # skipped silently (the fallback has its own test below).
  m = kernels.library()
  assert m is not None, "the fused kernel did not build (see the log)"
  return m


def _reference_step(x, h, c, wx, wh, b, theta, grad, f_prev, i_prev, w2, b2):
  """Both layers with TensorFlow ops (the kernel's argument order)."""
  z = (tf.matmul(wx, x, transpose_a=True) + tf.matmul(wh, h, transpose_a=True)
       + b[:, None])
  zi, zf, zg, zo = tf.split(z, 4, axis=0)
  c = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zg)
  h = tf.sigmoid(zo) * tf.tanh(c)
  hidden = h.shape[0]
  z2 = tf.matmul(w2[:, :hidden], h) + w2[:, hidden:hidden + 1] * theta
  f = tf.sigmoid(z2[0] + w2[0, hidden + 1] * f_prev + b2[0])
  i = tf.sigmoid(z2[1] + w2[1, hidden + 1] * i_prev + b2[1])
  return h, c, f * theta - i * grad, f, i


def _step_args(rng, p, n_in, hidden):
  t = lambda *shape, s=1.0: tf.constant(rng.normal(size=shape) * s, tf.float32)
  return [t(n_in, p, s=3.0), t(hidden, p, s=0.5), t(hidden, p),
          t(n_in, 4 * hidden, s=0.5), t(hidden, 4 * hidden, s=0.5),
          t(4 * hidden), t(p), t(p, s=0.1), tf.sigmoid(t(p)),
          tf.sigmoid(t(p)), t(2, hidden + 2, s=0.5),
          tf.constant([4.0, -3.0])]


@pytest.mark.parametrize("p,n_in,hidden", [(1000, 2, 20), (7, 1, 3),
                                           (4097, 2, 5), (130, 1, 40)])
def test_step_and_its_gradient_match_tensorflow_ops(module, p, n_in, hidden):
  rng = np.random.default_rng(p)
  args = _step_args(rng, p, n_in, hidden)
  upstream = [tf.constant(rng.normal(size=a.shape), tf.float32)
              for a in (args[1], args[2], args[6], args[6], args[6])]
  out = {}
  for name, fn in (("ops", _reference_step), ("fused", module.meta_lstm_step)):
    with tf.GradientTape() as tape:
      tape.watch(args)
      outs = fn(*args)
      loss = sum(tf.reduce_sum(o * u) for o, u in zip(outs, upstream))
    out[name] = list(outs) + tape.gradient(loss, args)
  for a, b in zip(out["ops"], out["fused"]):
    scale = float(tf.reduce_max(tf.abs(a)))
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4,
                               atol=1e-5 * scale)


def test_saturated_gates_match_and_nan_propagates(module):
  """Pre-activations far outside the sigmoid's working range (the kernel
  clamps its exponent) give TensorFlow's values; a NaN input stays NaN in its
  own coordinate only."""
  args = _step_args(np.random.default_rng(3), 300, 2, 8)
  args[0] = args[0] * 1e3  # |z| up to ~1e4
  for a, b in zip(_reference_step(*args), module.meta_lstm_step(*args)):
    assert np.all(np.isfinite(b.numpy()))
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5)
  x = args[0].numpy()
  x[1, 17] = np.nan
  args[0] = tf.constant(x)
  h = module.meta_lstm_step(*args)[0].numpy()
  assert np.all(np.isnan(h[:, 17]))
  assert np.all(np.isfinite(np.delete(h, 17, axis=1)))


def test_saturated_forget_gate_is_exactly_one(module):
  """sigmoid(40) is 1.0 in float32, as TensorFlow gives it: the kernel's
  saturated forget gate must be exactly 1 (the meta-learner's SGD limit
  relies on it), not its reciprocal's nearest neighbour."""
  args = _step_args(np.random.default_rng(4), 300, 2, 8)
  args[10] = tf.zeros_like(args[10])
  args[11] = tf.constant([40.0, -2.0])
  f, i = module.meta_lstm_step(*args)[3:]
  np.testing.assert_array_equal(f.numpy(), 1.0)
  np.testing.assert_allclose(i.numpy(), 1 / (1 + np.exp(2.0)), rtol=1e-6)


@pytest.mark.parametrize("n", [1, 15, 16, 33, 5000])
def test_log_and_sign_op_and_its_gradient_match_tensorflow_ops(module, n):
  """The one-op preprocessing: the values of preprocess.log_and_sign(x, 10,
  axis=0) (both sides of e^-10, zeros, huge and tiny values, inf, NaN, in
  vector lanes and in the scalar tail) and its gradient."""
  rng = np.random.default_rng(n)
  t = math.exp(-10.0)
  special = [0.0, -0.0, t, -t, t * 1.001, t * 0.999, 1e-30, 1e38, -1.0,
             np.inf, -np.inf, np.nan]
  x = rng.normal(size=n) * 10.0 ** rng.uniform(-12, 3, size=n)
  x[:min(n, len(special))] = special[:n]
  x = tf.constant(rng.permutation(x), tf.float32)
  upstream = tf.constant(rng.normal(size=(2, n)), tf.float32)
  out = {}
  for name, fn in (("ops", lambda v: log_and_sign(v, 10.0, axis=0)),
                   ("fused", module.log_and_sign)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
      loss = tf.reduce_sum(tf.where(tf.math.is_finite(y), y, 0.0) * upstream)
    grad = tape.gradient(loss, x)
    out[name] = (y.numpy(), np.where(np.isfinite(x.numpy()), grad.numpy(), 0))
  assert out["fused"][0].shape == (2, n)
  np.testing.assert_allclose(out["fused"][0], out["ops"][0], rtol=3e-7,
                             atol=1e-7)  # NaN where the ops give NaN
  np.testing.assert_allclose(out["fused"][1], out["ops"][1], rtol=1e-6)
  scalar = module.log_and_sign(tf.constant(0.3))
  np.testing.assert_allclose(scalar, log_and_sign(tf.constant(0.3)),
                             rtol=3e-7)


def _kernel_tests_in_subprocess(env, selection, passed):
  """Runs this file's tests matching `selection` in a child pytest process
  with environment `env` (a process of its own builds and registers its own
  kernel library), and checks that `passed` of them passed."""
  proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                         "no:cacheprovider", __file__, "-k", selection],
                        env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert f"{passed} passed" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="x86 vector widths")
def test_8_lane_build_matches_tensorflow_ops(tmp_path):
  """The kernels' AVX2 (8-float) code path, compiled on any x86 CPU: the
  comparisons above, in a process whose library is built without AVX-512
  (the generic exp and sigmoid, the 8-lane log)."""
  env = dict(os.environ, **{kernels.FLAGS_ENV: "-mno-avx512f",
                            "METALSTM_CACHE_DIR": str(tmp_path)})
  _kernel_tests_in_subprocess(env, "match_tensorflow_ops or saturated",
                              passed=11)
  assert len(list((tmp_path / "kernels").glob("*.so"))) == 1


def test_step_is_deterministic(module):
  args = _step_args(np.random.default_rng(0), 9000, 2, 20)
  upstream = [args[1], args[2], args[6], args[7], args[8]]
  grads = [module.meta_lstm_step_grad(*args, *upstream) for _ in range(3)]
  for g in grads[1:]:
    for a, b in zip(grads[0], g):
      np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_shapes_are_rejected_with_a_clear_error(module):
  args = _step_args(np.random.default_rng(0), 10, 2, 20)

  def call(**changes):
    names = ["x", "h", "c", "wx", "wh", "b", "theta", "grad", "f_prev",
             "i_prev", "w2", "b2"]
    module.meta_lstm_step(*[changes.get(n, a) for n, a in zip(names, args)])

  with pytest.raises(tf.errors.InvalidArgumentError, match="wh must be"):
    call(wh=tf.zeros([20, 79]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="like x's P"):
    call(h=tf.zeros([20, 11]), c=tf.zeros([20, 11]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="w2 must be"):
    call(w2=tf.zeros([2, 21]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be .P. vec"):
    call(grad=tf.zeros([11]))


def _meta_gradients(rule, learner, x, y, steps, second_order):
  with tf.GradientTape() as tape:
    result = inner_loop.adapt(learner, rule, x, y, steps, int(x.shape[0]),
                              second_order)
    loss = learner.loss(learner.apply_theta(result.theta, x), y)
  return [loss] + tape.gradient(loss, rule.trainable_variables)


@pytest.mark.parametrize("second_order,preprocess",
                         [(False, True), (True, False), (True, True)])
def test_meta_lstm_fused_and_ops_agree(module, second_order, preprocess):
  """Whole meta-gradients through 4 inner steps, first and second order."""
  if preprocess:
    learner = Conv4Learner(3, (16, 16, 1), filters=4, seed=0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((6, 16, 16, 1)), tf.float32)
    y = tf.constant(np.arange(6) % 3, tf.int32)
  else:
    learner = MLPLearner(seed=0)
    xs = np.linspace(-5, 5, 10, dtype=np.float32)[:, None]
    x, y = tf.constant(xs), tf.constant(2.0 * np.sin(xs - 0.5))
  results = []
  for fused in (False, True):
    rule = MetaLSTM(learner.initial_theta(), hidden_size=6, seed=1,
                    preprocess=preprocess, fused=fused)
    # Larger meta-weights than the initial U(-0.01, 0.01), so that layer 1
    # matters for the result.
    for v in (rule.lstm_kernel, rule.w_input, rule.w_forget):
      v.assign(v * 30.0)
    step = tf.function(lambda: _meta_gradients(rule, learner, x, y, 4,
                                               second_order))
    results.append(step())
  for a, b in zip(*results):
    scale = float(tf.reduce_max(tf.abs(a)))
    assert scale > 0
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3,
                               atol=1e-4 * scale)


def _one_step(seed=0, p=50):
  rule = MetaLSTM(tf.ones([p]), hidden_size=4, seed=seed)
  rng = np.random.default_rng(seed)
  theta0 = tf.constant(rng.normal(size=p), tf.float32)
  grad = tf.constant(rng.normal(size=p) * 0.1, tf.float32)
  state = rule.init_state(theta0)
  theta, state = rule.step(theta0, grad, tf.constant(0.7), state)
  theta, _ = rule.step(theta, grad * 0.5, tf.constant(0.6), state)
  return theta.numpy()


def test_fallback_to_tensorflow_ops_when_the_kernel_cannot_build(
    module, tmp_path, monkeypatch):
  """Where the kernel cannot be built, TensorFlow ops give the values the
  kernel gives (two steps of the same rule, compared value by value)."""
  with_kernel = _one_step()
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
  monkeypatch.setenv("METALSTM_CACHE_DIR", str(tmp_path / "cache"))
  kernels.library.cache_clear()
  try:
    with pytest.MonkeyPatch.context() as m:
      warnings = []
      m.setattr(kernels.logging, "warning",
                lambda msg, *a: warnings.append(msg % a))
      assert kernels.library() is None
      assert "unavailable" in warnings[0] and "TensorFlow ops" in warnings[0]
      without = _one_step()
  finally:
    kernels.library.cache_clear()
  assert not np.array_equal(without, _one_step(seed=1))  # the check bites
  np.testing.assert_allclose(without, with_kernel, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_failed_compilation_is_tried_again_with_the_retry_flags(tmp_path):
  """A compiler that fails on the plain command (as g++ 12 does on the
  AVX512-FP16 Eigen code of a Sapphire Rapids CPU) gets the command again
  with RETRY_FLAGS, and the library it then builds computes what
  TensorFlow's ops compute."""
  real = shutil.which(os.environ.get("CXX", "g++"))
  calls = tmp_path / "calls"
  fake = tmp_path / "picky-cxx"
  fake.write_text(
      "#!/bin/sh\n"
      f"echo \"$*\" >> {calls}\n"
      'case " $* " in\n'
      f'  *" {kernels.RETRY_FLAGS[0][0]} "*) exec {real} "$@" ;;\n'
      "esac\n"
      'echo "error: expected initializer before <" >&2\n'
      "exit 1\n")
  fake.chmod(0o755)
  # In another process: this one has registered the kernels' ops already.
  env = dict(os.environ, CXX=str(fake),
             METALSTM_CACHE_DIR=str(tmp_path / "cache"))
  _kernel_tests_in_subprocess(
      env, "test_step_and_its_gradient_match_tensorflow_ops", passed=4)
  lines = calls.read_text().splitlines()
  assert len(lines) == 2
  assert kernels.RETRY_FLAGS[0][0] not in lines[0]
  assert kernels.RETRY_FLAGS[0][0] in lines[1]


def test_the_first_compiler_error_is_reported_when_every_try_fails(
    tmp_path, monkeypatch):
  fake = tmp_path / "broken-cxx"
  fake.write_text('#!/bin/sh\necho "error: the first attempt" >&2\n'
                  "exit 3\n")
  fake.chmod(0o755)
  monkeypatch.setenv("METALSTM_CACHE_DIR", str(tmp_path / "cache"))
  out = kernels._library_path(str(fake))
  out.parent.mkdir(parents=True)
  with pytest.raises(RuntimeError, match="exited with 3:\n.*first attempt"):
    kernels._compile(str(fake), out)
  assert list(out.parent.iterdir()) == []


def test_a_library_that_is_not_ours_is_never_loaded(module, tmp_path,
                                                    monkeypatch):
  """A cached library whose bytes differ from the digest recorded when it
  was compiled is deleted and compiled again, never loaded."""
  cxx = os.environ.get("CXX", "g++")
  built = kernels._library_path(cxx)  # the library `module` came from
  monkeypatch.setenv("METALSTM_CACHE_DIR", str(tmp_path / "cache"))
  copy = kernels._library_path(cxx)
  copy.parent.mkdir(parents=True)
  shutil.copy(built, copy)
  shutil.copy(kernels._digest_file(built), kernels._digest_file(copy))
  assert kernels._is_ours(copy)
  with open(copy, "ab") as f:  # one byte appended
    f.write(b"\0")
  assert not kernels._is_ours(copy)
  compiled, warnings = [], []

  def no_compiler(cxx, out):
    compiled.append(out)
    raise RuntimeError("no compiler (test)")
  monkeypatch.setattr(kernels, "_compile", no_compiler)
  monkeypatch.setattr(kernels.logging, "warning",
                      lambda msg, *a: warnings.append(msg % a))
  kernels.library.cache_clear()
  try:
    assert kernels.library() is None
  finally:
    kernels.library.cache_clear()
  assert "is not the library this source and compiler produced" in warnings[0]
  assert not copy.exists() and compiled == [copy]


def test_the_kernel_directory_is_private(tmp_path):
  shared = tmp_path / "kernels"
  shared.mkdir(mode=0o777)
  os.chmod(shared, 0o777)
  kernels._private_directory(shared)
  assert shared.stat().st_mode & 0o777 == 0o700
  fresh = tmp_path / "new" / "kernels"
  kernels._private_directory(fresh)
  assert fresh.stat().st_mode & 0o777 == 0o700


def test_disabled_by_environment(monkeypatch):
  monkeypatch.setenv(kernels.DISABLE_ENV, "0")
  kernels.library.cache_clear()
  try:
    assert kernels.library() is None
  finally:
    monkeypatch.delenv(kernels.DISABLE_ENV)
    kernels.library.cache_clear()


def test_standard_ops_context_builds_no_custom_op(module):
  rule = MetaLSTM(tf.ones([30]), hidden_size=4, seed=0)

  def step():
    theta = rule.initial_theta()
    return rule.step(theta, tf.ones([30]), tf.constant(1.0),
                     rule.init_state(theta))[0]

  def op_types(fn):
    graph = tf.function(fn).get_concrete_function().graph
    return {op.type for op in graph.get_operations()}

  assert {"MetaLstmStep", "LogAndSign"} <= op_types(step)
  with rule.standard_ops():
    assert not {"MetaLstmStep", "LogAndSign"} & op_types(step)
  assert rule.fused


def test_trainer_without_the_fused_kernel_builds_standard_ops(tmp_path,
                                                             module):
  """--nofused_kernel: the traced training step holds no custom op, and
  gives the fused step's loss."""
  from helpers import build, tiny_config
  losses = {}
  for fused in (True, False):
    task, rule, trainer = build(tiny_config(tmp_path / str(fused),
                                            fused_kernel=fused))
    batch = next(iter(task.train_dataset(0)))
    graph = trainer._meta_gradients.get_concrete_function(batch).graph
    types = {op.type for op in graph.get_operations()}
    for f in graph._functions.values():  # nested functions (gradients)
      types |= {op.type for op in f.graph.get_operations()}
    assert ("MetaLstmStep" in types) == fused
    losses[fused] = float(trainer.train_step(batch)["loss"])
  assert losses[True] == pytest.approx(losses[False], rel=1e-4)
