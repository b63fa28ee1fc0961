"""Few-shot learning methods, registered by name (`--method`).

Importing this package registers every method; `get(name)` returns its
`MethodSpec`, `build(config, learner)` the configured method.
"""

from metalstm_tf.methods import meta_lstm, meta_cells, sgd, meta_sgd, turtle, protonet, plain_lstm, op_lstm  # noqa: F401,I001  (registration, in this order)
from metalstm_tf.methods.base import EpisodeOutput, Method
from metalstm_tf.methods.gradient import GradientMethod
from metalstm_tf.methods.registry import REGISTRY, MethodSpec, get


def names() -> list[str]:
  return list(REGISTRY)


def build(config, learner) -> Method:
  """The method `config.method` with `config.method_options` on `learner`."""
  return get(config.method).build(config.method_options, learner, config)
