"""Fused C++ CPU kernels, compiled on first use.

`library()` returns the op library built from `meta_lstm_cell.cc` (the
fused step of the meta-learner's two layers and its gradient, and the
log/sign input preprocessing as one op) and `conv_block.cc` (batch norm,
ReLU and max-pooling of a Conv-4 block, forward and backward), or None when
it cannot be built here; callers then use the equivalent TensorFlow ops. The
library is compiled once per machine, TensorFlow version and source with the
C++ compiler (`$CXX`, else `g++`) for the host CPU (`-march=native`; if that
fails, again without AVX512-FP16, whose Eigen code g++ 12 cannot compile), and
cached as `<cache dir>/kernels/metalstm_kernels-<hash>.so` (the cache directory
of the datasets: `$METALSTM_CACHE_DIR`, else `~/.cache/metalstm/cache`).
`$METALSTM_KERNEL_CXXFLAGS` adds compiler flags (for example
`-march=x86-64-v3` for a library that also runs on older CPUs). Set
`METALSTM_FUSED_KERNEL=0` to never build or use it.

Loading a shared library runs its code, so the library is only loaded from a
directory private to the user (created with mode 0700; an existing one owned
by the user is made so, one owned by another user is refused), and only if
it is the file this project compiled: the SHA-256 of its bytes, recorded
beside it at compile time (`<name>.so.sha256`), must match. A library that
does not match is deleted and compiled again.
"""

import contextlib
import functools
import hashlib
import os
import pathlib
import platform
import shlex
import subprocess

from absl import logging
import tensorflow as tf

from metalstm_tf.block_ops import block_tail
from metalstm_tf.preprocess import log_and_sign

SOURCES = [pathlib.Path(__file__).with_name(name)
           for name in ("meta_lstm_cell.cc", "conv_block.cc")]
DISABLE_ENV = "METALSTM_FUSED_KERNEL"
FLAGS_ENV = "METALSTM_KERNEL_CXXFLAGS"
CXX_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-fno-math-errno",
             "-Wno-deprecated-declarations", "-Wno-interference-size"]
# Tried in turn when a compilation fails. g++ 12 cannot compile the AVX512-FP16
# packet math of the Eigen that TensorFlow 2.21 ships, which `-march=native`
# turns on for CPUs with that extension (Sapphire Rapids and later); the
# kernels compute in float32 only, so they lose nothing without it.
RETRY_FLAGS = [["-mno-avx512fp16"]]


class FusedKernelUser:
  """Mixin of the layers whose graphs may use these kernels (learners,
  update rules): `fused` says whether they may, and `standard_ops()` turns
  it off within its context, so that the graphs built there use standard
  TensorFlow ops only (SavedModels that load without this project, XLA).
  Layers that have no fused path leave `fused` False."""

  fused = False

  @contextlib.contextmanager
  def standard_ops(self):
    saved, self.fused = self.fused, False
    try:
      yield
    finally:
      self.fused = saved


def _cxx_flags() -> list[str]:
  return CXX_FLAGS + shlex.split(os.environ.get(FLAGS_ENV, ""))


def _cpu_signature() -> str:
  """What `-march=native` compiles for: the CPU model and its flags."""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor()
  keep = [l for l in text.splitlines()
          if l.startswith(("model name", "flags", "Features", "CPU part"))]
  return "\n".join(sorted(set(keep)))


def _library_path(cxx: str) -> pathlib.Path:
  from data_prep.paths import resolve_cache_dir
  key = hashlib.sha256("\n".join([
      *[source.read_text() for source in SOURCES], tf.__version__, cxx,
      " ".join(_cxx_flags()), " ".join(tf.sysconfig.get_compile_flags()),
      platform.machine(),
      _cpu_signature()]).encode()).hexdigest()[:16]
  return resolve_cache_dir() / "kernels" / f"metalstm_kernels-{key}.so"


def _private_directory(path: pathlib.Path) -> None:
  """Creates `path` (mode 0700) or makes it private; refuses a directory
  that belongs to another user."""
  path.mkdir(mode=0o700, parents=True, exist_ok=True)
  st = path.stat()
  if st.st_uid != os.getuid():
    raise RuntimeError(
        f"the kernel directory {path} belongs to another user (uid "
        f"{st.st_uid}); set METALSTM_CACHE_DIR to a directory of your own")
  if st.st_mode & 0o077:
    os.chmod(path, 0o700)


def _digest(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest_file(library: pathlib.Path) -> pathlib.Path:
  return library.with_name(library.name + ".sha256")


def _is_ours(library: pathlib.Path) -> bool:
  """The library is the file this project compiled: owned by the user and
  with the digest recorded when it was compiled."""
  record = _digest_file(library)
  if not (library.is_file() and record.is_file()):
    return False
  if library.stat().st_uid != os.getuid():
    return False
  return record.read_text().strip() == _digest(library)


def _compile(cxx: str, out: pathlib.Path) -> None:
  """Compiles SOURCES into `out` atomically (temporary file, then rename),
  then records its digest. If the compiler fails, each of RETRY_FLAGS is
  tried in turn; the first error is the one reported if all fail."""
  from data_prep.atomic import atomic_path, atomic_write_text, remove_leftovers
  remove_leftovers(out.parent)
  with atomic_path(out, suffix=".so") as tmp:
    attempts, first_error = [[]] + RETRY_FLAGS, None
    for n, extra in enumerate(attempts):
      cmd = ([cxx] + _cxx_flags() + extra + tf.sysconfig.get_compile_flags() +
             [str(source) for source in SOURCES] + ["-o", str(tmp)] +
             tf.sysconfig.get_link_flags())
      logging.info("Compiling the fused CPU kernels (once per machine): "
                   "%s", shlex.join(cmd))
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
      if not proc.returncode:
        break
      if first_error is None:
        first_error = (f"{cxx} exited with {proc.returncode}:\n"
                       f"{proc.stderr[-3000:]}")
      if n + 1 < len(attempts):
        logging.info("The compilation failed; trying again with %s.",
                     " ".join(attempts[n + 1]))
    else:
      raise RuntimeError(first_error)
    digest = _digest(tmp)
  atomic_write_text(_digest_file(out), digest + "\n")


@functools.cache
def library():
  """The fused kernels' op module, or None (logged) if unavailable."""
  if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no"):
    logging.info("%s=0: using TensorFlow ops instead of the fused kernels.",
                 DISABLE_ENV)
    return None
  cxx = os.environ.get("CXX", "g++")
  try:
    path = _library_path(cxx)
    _private_directory(path.parent)
    if path.is_file() and not _is_ours(path):
      logging.warning(
          "%s is not the library this source and compiler produced (its "
          "digest does not match the one recorded when it was compiled); "
          "deleting it and compiling again.", path)
      path.unlink()
    if not path.is_file():
      _compile(cxx, path)
    if not _is_ours(path):
      raise RuntimeError(f"{path} changed while it was being loaded")
    module = tf.load_op_library(str(path))
  except Exception as e:  # Any failure: fall back to TensorFlow's ops.
    logging.warning(
        "The fused CPU kernels are unavailable (%s); using TensorFlow "
        "ops instead, which gives the same results more slowly. Install a "
        "C++17 compiler (or set $CXX) to enable it, or set %s=0 to silence "
        "this.", e, DISABLE_ENV)
    return None
  _register_gradient(module)
  return module


_gradient_module = None  # The library whose op the registered gradient runs.


def _register_gradient(module):
  global _gradient_module
  if _gradient_module is None:  # TensorFlow allows one registration.

    @tf.RegisterGradient("MetaLstmStep")
    def _meta_lstm_step_grad(op, *upstream):
      upstream = [tf.zeros_like(out) if d is None else d
                  for out, d in zip(op.outputs, upstream)]
      return _gradient_module.meta_lstm_step_grad(*op.inputs, *upstream)

    @tf.RegisterGradient("LogAndSign")
    def _log_and_sign_grad(op, upstream):
      # The gradient of the TensorFlow-ops function it replaces.
      x = op.inputs[0]
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = log_and_sign(x, op.get_attr("p"), axis=0)
      return tape.gradient(y, x, output_gradients=upstream)

    @tf.RegisterGradient("BatchNormReluPool")
    def _block_grad(op, dy, unused_dmean, unused_drstd):
      # The op's mean and rstd outputs only feed its gradient op, which
      # differentiates through them itself (below).
      return _gradient_module.batch_norm_relu_pool_grad(
          *op.inputs, op.outputs[1], op.outputs[2], dy)

    @tf.RegisterGradient("BatchNormReluPoolGrad")
    def _block_grad_grad(op, *upstream):
      # Second order (e.g. MAML): the gradient of the TensorFlow-ops block's
      # gradient. mean and rstd are functions of x, and the block recomputes
      # them from x, so their own inputs get no gradient.
      x, bias, gamma, beta, _, _, dy = op.inputs
      upstream = [tf.zeros_like(v) if u is None else u
                  for v, u in zip((x, bias, gamma, beta), upstream)]
      inputs = [x, bias, gamma, beta]
      with tf.GradientTape() as outer:
        outer.watch(inputs + [dy])
        with tf.GradientTape() as inner:
          inner.watch(inputs)
          y = block_tail(x, bias, gamma, beta)
        first = inner.gradient(y, inputs, output_gradients=dy)
      grads = outer.gradient(first, inputs + [dy], output_gradients=upstream)
      return grads[:4] + [None, None] + grads[4:]

  _gradient_module = module
