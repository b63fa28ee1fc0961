"""The method interface: one few-shot learning method, whole.

A method owns its meta-parameters and says how a task is learned from its
support set and how queries are then predicted:

    out = method.run(support_x, support_y, query_x)   # EpisodeOutput
    loss = method.loss(out.outputs, query_y)

The trainer, the export and the summaries use only this interface. Methods
that adapt a learner with an update rule fed by the learner's gradients
(`GradientMethod`) are one implementation; methods without an inner loop
(e.g. prototype classifiers) or that read the support set directly implement
`run` their own way. What a method can do is declared, not inferred from its
name: `uses_gradients` (it is fed the learner's gradients, so first and
second order differ), `second_order`, `supports_step_outputs` (query
predictions after every inner step, for a multi-step loss).

Queries are predicted transductively by default (the papers' protocol: the
learner's batch norm normalises the query batch with its own statistics, so
a query's prediction depends on the other queries). With
`transductive=False` every query is predicted on its own: batch statistics
come from the support set. `run_both` returns both predictions of an
episode (a run's test reports both).
"""

import contextlib
from typing import NamedTuple

import keras
import tensorflow as tf


class EpisodeOutput(NamedTuple):
  """What one episode produced.

  Attributes:
    outputs: the query predictions after adaptation (logits `[Q, way]` or
      regression outputs `[Q, 1]`).
    step_outputs: the query predictions after each inner step (the last is
      `outputs`) when asked for and supported; else empty.
    traces: name -> list of per-step `[C]` tensors of per-coordinate values
      worth plotting (a gated cell's gates); empty for methods without any.
  """
  outputs: tf.Tensor
  step_outputs: list
  traces: dict


class Method(keras.layers.Layer):
  """Base class; the layer's trainable weights are the meta-parameters.

  Args:
    learner: the task's learner; its loss and metric are the method's.
  """

  uses_gradients = False
  supports_step_outputs = False

  def __init__(self, learner, **kwargs):
    super().__init__(**kwargs)
    # Not tracked as a sub-layer: the learner's own weights are a fresh
    # learner's, not meta-parameters (a method copies what it learns of them).
    self.__dict__["_learner"] = learner

  @property
  def learner(self):
    return self.__dict__["_learner"]

  @property
  def second_order(self) -> bool:
    """Whether meta-gradients flow through the learner's gradients."""
    return False

  def run(self, support_x, support_y, query_x, keep_steps: bool = False,
          transductive: bool = True) -> EpisodeOutput:
    """Adapts to the support set and predicts the queries.

    Args:
      support_x, support_y: `[S, ...]` inputs and `[S, ...]` targets.
      query_x: `[Q, ...]` inputs.
      keep_steps: also return the predictions after every inner step.
      transductive: False: each query's prediction depends on it and the
        support set alone.
    """
    raise NotImplementedError

  def run_both(self, support_x, support_y, query_x) -> dict:
    """Both predictions of the queries: `{"per_query": EpisodeOutput,
    "transductive": EpisodeOutput}`, each what `run` returns with
    `transductive` False and True. This default runs the episode twice;
    a method whose adaptation does not read the queries adapts once."""
    return {"per_query": self.run(support_x, support_y, query_x,
                                  transductive=False),
            "transductive": self.run(support_x, support_y, query_x)}

  def unadapted_outputs(self, query_x):
    """Predictions before any adaptation, or None where that is undefined."""
    return None

  def loss(self, outputs, y):
    return self.learner.loss(outputs, y)

  def metric(self, outputs, y):
    return self.learner.metric(outputs, y)

  def summaries(self) -> dict:
    """The method's own TensorBoard values: name -> tensor (rank 0: a
    scalar; else a histogram). E.g. per-layer step sizes."""
    return {}

  def trackables(self) -> dict:
    """Name -> object whose variables a checkpoint holds."""
    return {"method": self}

  @property
  def trace_size(self) -> int:
    """Length C of the per-coordinate traces (0: none)."""
    return 0

  def trace_names(self, indices) -> list[str]:
    """Readable names of trace coordinates `indices`."""
    return [str(i) for i in indices]

  @contextlib.contextmanager
  def standard_ops(self):
    """Within this context graphs use standard TensorFlow ops only (for
    SavedModels that load without this project, and XLA)."""
    with self.learner.standard_ops():
      yield
