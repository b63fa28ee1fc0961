"""Few-shot learning methods, registered by name (`--method`).

Importing this package registers every method; `get(name)` returns its
`MethodSpec`, `build(config, learner)` the configured method. The
registration modules hold only options, defaults and a `build` function:
TensorFlow loads when a method is built (or `Method`, `EpisodeOutput` or
`GradientMethod` is first used), so a command line is checked in a fraction
of a second.
"""

import importlib

from metalstm_tf.methods import meta_lstm, meta_cells, sgd, meta_sgd, turtle, protonet, plain_lstm, op_lstm  # noqa: F401,I001  (registration, in this order)
from metalstm_tf.methods.registry import REGISTRY, MethodSpec, get

_LAZY = {"EpisodeOutput": "base", "Method": "base",
         "GradientMethod": "gradient"}


def __getattr__(name: str):
  if name in _LAZY:
    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def names() -> list[str]:
  return list(REGISTRY)


def build(config, learner) -> "Method":
  """The method `config.method` with `config.method_options` on `learner`."""
  return get(config.method).build(config.method_options, learner, config)
