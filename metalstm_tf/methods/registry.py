"""The method registry: every method by name, with its options.

A method module defines a frozen options dataclass (each field's
`metadata["help"]` documents the command-line flag of the same name) and a
`build(options, learner, config) -> Method`, and registers both here. It
imports TensorFlow, and its network, inside `build` only, so that the
command line is parsed before TensorFlow loads (a test checks it). Adding a
method is that module, its line in `methods/__init__.py` and its files in
`BUILD`: the flags, the trainer, the export and the conformance tests
enumerate the registry.
"""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  """A registered method.

  Attributes:
    name: the `--method` value.
    options: the frozen dataclass of the method's options.
    build: `(options, learner, config) -> Method`.
    summary: one line for `--help` and the README.
    option_defaults: `(dataset, shots) -> dict` of protocol-specific option
      defaults (over the dataclass's own).
    config_defaults: `(dataset, shots) -> dict` of the method's paper's
      defaults for general settings (`inner_steps`, `meta_batch_size`,
      `filters`), used where the command line does not set them.
  """
  name: str
  options: type
  build: Callable[..., Any]
  summary: str
  option_defaults: Callable[[str, int], dict] = lambda dataset, shots: {}
  config_defaults: Callable[[str, int], dict] = lambda dataset, shots: {}

  def default_options(self, dataset: str, shots: int):
    return self.options(**self.option_defaults(dataset, shots))


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
  if spec.name in REGISTRY:
    raise ValueError(f"Method {spec.name!r} is registered twice.")
  if not (dataclasses.is_dataclass(spec.options) and
          spec.options.__dataclass_params__.frozen):
    raise TypeError(f"{spec.name}: options must be a frozen dataclass.")
  REGISTRY[spec.name] = spec
  return spec


def get(name: str) -> MethodSpec:
  if name not in REGISTRY:
    raise ValueError(f"Unknown method {name!r}; choose one of "
                     f"{', '.join(REGISTRY)}.")
  return REGISTRY[name]


def require_positive_ints(options, *names: str) -> None:
  """Raises ValueError naming the flag if a field of `options` in `names`
  is not an integer of 1 or more (for options' `__post_init__`)."""
  for name in names:
    value = getattr(options, name)
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"--{name} must be a positive integer, got "
                       f"{value!r}.")


def option(default, help: str, **kwargs):
  """A dataclass field documented for its command-line flag."""
  return dataclasses.field(default=default, metadata={"help": help}, **kwargs)
