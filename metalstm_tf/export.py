"""SavedModel export of a trained meta-learner.

The exported module has these signatures:

    adapt_and_predict(support_images, support_labels, query_images)
        -> {"logits": [num_query, way]}   (regression: [num_query, 1])
    adapt_and_predict_transductive(...)   the same, transductive
    metadata() -> {"json": scalar string}

that run the method inside the graph: e.g. it adapts the learner from c_0
on the support set and classifies the queries. Loading it needs only
TensorFlow (`tf.saved_model.load`), not this project.

- The support set may hold any number of examples per class (at least one,
  the same for every class: the signature's support dimension is not fixed)
  in any order; classifiers reorder it so that consecutive examples cycle
  through the classes, as the shuffled support sets of training do (the
  inner loop's mini-batches then hold every class).
- `adapt_and_predict` predicts every query on its own (batch norm uses the
  support set's statistics), so a query's logits do not depend on the other
  queries of the call; `adapt_and_predict_transductive` normalises the
  queries with their own batch's statistics, the papers' protocol.
- Class labels must be ids in [0, way); bad labels fail with a message.
- `metadata()` (also `metadata.json` in the SavedModel directory) describes
  the model: ways, input shape and input convention, the training command
  and its validation and test figures.
"""

import json
import pathlib

import tensorflow as tf

from data_prep.atomic import atomic_path, remove_leftovers

from metalstm_tf.methods.base import Method

METADATA_FILE = "metadata.json"


def _cycle_classes(labels, way):
  """The order of a support set that takes each class's k-th example for
  k = 0, 1, ... in turn (stable within a class)."""
  one_hot = tf.one_hot(labels, way, dtype=tf.int32)
  rank = tf.reduce_sum(tf.cumsum(one_hot, axis=0, exclusive=True) * one_hot,
                       axis=1)
  return tf.argsort(rank * way + labels, stable=True)


def _check_labels(labels, way):
  """Asserts class ids in [0, way), the same count (at least 1) per class."""
  counts = tf.math.bincount(labels, minlength=way, maxlength=way)
  return [
      tf.debugging.assert_greater_equal(
          labels, 0, message=f"support_labels must be class ids in "
          f"[0, {way}): a label is negative."),
      tf.debugging.assert_less(
          labels, way, message=f"support_labels must be class ids in "
          f"[0, {way}): this model classifies {way} classes."),
      tf.debugging.assert_equal(
          counts, tf.fill([way], counts[0]), message=f"Every one of the "
          f"{way} classes needs the same number of support examples."),
      tf.debugging.assert_positive(
          counts[0], message=f"Every one of the {way} classes needs at "
          "least one support example."),
  ]


def _checked(values, name: str, shape, what: str):
  """`values` [N, *shape] after in-graph checks of its rank, its example
  shape and its finiteness, each a clear error for the caller. (The
  signatures take any shape, so that a caller that bypasses Python's
  signature checks, e.g. a C++ server, gets these errors rather than a
  kernel's. The conditions are computed by ops that cannot fail on a wrong
  shape, and each check passes when an earlier one fails, so that the error
  raised is always the first check's.)"""
  shape = [int(d) for d in shape]
  dims = "x".join(str(d) for d in shape) or "scalar"
  rank = len(shape) + 1
  rank_ok = tf.equal(tf.rank(values), rank)
  # The shape padded with zeros: a rank other than the signature's (which
  # graph optimisation may assume) shows as a wrong or an extra dimension.
  padded = tf.concat([tf.shape(values), tf.zeros([rank + 1], tf.int32)], 0)
  size_ok = tf.logical_and(
      tf.reduce_all(tf.equal(padded[1:rank], tf.constant(shape, tf.int32))),
      tf.equal(padded[rank], 0))
  checks = [
      tf.debugging.Assert(rank_ok, [
          f"{name} must be a batch of {what}: a rank-{rank} tensor "
          f"[N, {', '.join(str(d) for d in shape)}], not rank",
          tf.rank(values)]),
      tf.debugging.Assert(tf.logical_or(tf.logical_not(rank_ok), size_ok), [
          f"{name} must hold {dims} {what} (this model's input; convert "
          "them as its metadata's input_convention says); the shape given "
          "is", tf.shape(values)]),
  ]
  if values.dtype.is_floating:
    # (Flattened: a reduction over every axis of an input of unknown rank
    # may be specialised to the rank of an earlier call's input.)
    finite = tf.reduce_all(tf.math.is_finite(tf.reshape(values, [-1])), 0)
    checks.append(tf.debugging.Assert(
        tf.logical_or(tf.logical_not(tf.logical_and(rank_ok, size_ok)),
                      finite), [f"{name} hold NaN or infinite values."]))
  with tf.control_dependencies(checks):
    values = tf.identity(values)
  return tf.ensure_shape(values, [None] + shape)


class _AdaptAndPredict(tf.Module):

  def __init__(self, method: Method, input_shape, label_dtype, label_shape,
               metadata: dict):
    super().__init__()
    self.method = method
    self.meta_variables = [v.value if hasattr(v, "value") else v
                           for v in method.weights]
    self._classifier = label_dtype.is_integer and not label_shape
    self._way = getattr(method.learner, "way", None)
    self._metadata = json.dumps(metadata, sort_keys=True)
    self._input_shape = [int(d) for d in input_shape]
    self._label_shape = [int(d) for d in label_shape]
    # Only the rank is fixed (a call of another rank is refused before the
    # graph runs); `_checked` validates the sizes and values in the graph.
    images = [None] * (len(self._input_shape) + 1)
    spec = [tf.TensorSpec(images, tf.float32, "support_images"),
            tf.TensorSpec([None] * (len(self._label_shape) + 1), label_dtype,
                          "support_labels"),
            tf.TensorSpec(images, tf.float32, "query_images")]
    self.adapt_and_predict = tf.function(self._per_query,
                                         input_signature=spec)
    self.adapt_and_predict_transductive = tf.function(self._transductive,
                                                      input_signature=spec)
    self.metadata = tf.function(self._metadata_fn, input_signature=[])

  def _predict(self, support_images, support_labels, query_images,
               transductive):
    what = "images" if len(self._input_shape) == 3 else "inputs"
    support_images = _checked(support_images, "support_images",
                              self._input_shape, what)
    query_images = _checked(query_images, "query_images", self._input_shape,
                            what)
    support_labels = _checked(support_labels, "support_labels",
                              self._label_shape, "labels")
    if self._classifier:
      with tf.control_dependencies(_check_labels(support_labels, self._way)):
        order = _cycle_classes(support_labels, self._way)
      support_images = tf.gather(support_images, order)
      support_labels = tf.gather(support_labels, order)
    out = self.method.run(support_images, support_labels, query_images,
                          transductive=transductive)
    return {"logits": out.outputs}

  def _per_query(self, support_images, support_labels, query_images):
    return self._predict(support_images, support_labels, query_images, False)

  def _transductive(self, support_images, support_labels, query_images):
    return self._predict(support_images, support_labels, query_images, True)

  def _metadata_fn(self):
    return {"json": tf.constant(self._metadata)}


def read_metadata(path) -> dict:
  """The metadata of an exported SavedModel directory (no TensorFlow)."""
  return json.loads((pathlib.Path(path) / METADATA_FILE).read_text())


def export_saved_model(path, method: Method, input_shape,
                       label_dtype=tf.int32, label_shape=(),
                       metadata: dict | None = None) -> pathlib.Path:
  """Writes the SavedModel to `path` atomically (temporary dir, then rename).

  Args:
    input_shape: shape of one input, e.g. `(28, 28, 1)`.
    label_dtype: int32 labels for classifiers, float32 targets for regressors.
    label_shape: shape of one label (`()` for class ids, `(1,)` for sine).
    metadata: JSON-serialisable description of the model (see the module
      docstring), returned by the `metadata` signature and written to
      `metadata.json`.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  metadata = dict(metadata or {})
  metadata.setdefault("input_shape", [int(d) for d in input_shape])
  metadata["signatures"] = {
      "adapt_and_predict": "per query: a query's logits depend on it and the "
                           "support set alone",
      "adapt_and_predict_transductive": "the queries' batch statistics are "
                                        "their own (the papers' protocol)"}
  module = _AdaptAndPredict(method, input_shape, label_dtype, label_shape,
                            metadata)
  remove_leftovers(path.parent)
  with atomic_path(path, directory=True) as tmp:
    with method.standard_ops():  # Loadable without this project's kernels.
      tf.saved_model.save(module, str(tmp), signatures={
          "adapt_and_predict": module.adapt_and_predict,
          "adapt_and_predict_transductive":
              module.adapt_and_predict_transductive,
          "metadata": module.metadata})
    (tmp / METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, sort_keys=True) + "\n")
  return path
