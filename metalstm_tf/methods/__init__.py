"""Few-shot learning methods, registered by name (`--method`).

Importing this package registers every method; `get(name)` returns its
`MethodSpec`, `build(config, learner)` the configured method. The
registration modules hold only options, defaults and a `build` function:
TensorFlow loads when a method is built, so a command line is checked in a
fraction of a second. The interface every method implements is
`methods.base.Method`.
"""

from metalstm_tf.methods import meta_lstm, meta_cells, sgd, meta_sgd, turtle, protonet, plain_lstm, op_lstm  # noqa: F401,I001  (registration, in this order)
from metalstm_tf.methods.registry import REGISTRY, MethodSpec, get  # noqa: F401


def names() -> list[str]:
  return list(REGISTRY)


def build(config, learner):
  """The method `config.method` (a `methods.base.Method`) with
  `config.method_options` on `learner`."""
  return get(config.method).build(config.method_options, learner, config)
