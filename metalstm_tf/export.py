"""SavedModel export of a trained meta-learner.

The exported module has one signature,

    adapt_and_predict(support_images, support_labels, query_images)
        -> {"logits": [num_query, way]}   (regression: [num_query, 1])

that runs the method inside the graph: e.g. it adapts the learner from c_0
on the support set and classifies the queries. Loading it needs only
TensorFlow (`tf.saved_model.load`), not this project.
"""

import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from metalstm_tf.methods.base import Method


class _AdaptAndPredict(tf.Module):

  def __init__(self, method: Method, num_support: int, input_shape,
               label_dtype, label_shape):
    super().__init__()
    self.method = method
    self.meta_variables = [v.value if hasattr(v, "value") else v
                           for v in method.weights]
    shape = list(input_shape)
    self.adapt_and_predict = tf.function(
        self._adapt_and_predict,
        input_signature=[
            tf.TensorSpec([num_support] + shape, tf.float32, "support_images"),
            tf.TensorSpec([num_support] + list(label_shape), label_dtype,
                          "support_labels"),
            tf.TensorSpec([None] + shape, tf.float32, "query_images"),
        ])

  def _adapt_and_predict(self, support_images, support_labels, query_images):
    out = self.method.run(support_images, support_labels, query_images)
    return {"logits": out.outputs}


def export_saved_model(path, method: Method, num_support: int, input_shape,
                       label_dtype=tf.int32, label_shape=()) -> pathlib.Path:
  """Writes the SavedModel to `path` atomically (temporary dir, then rename).

  Args:
    num_support: support-set size the signature accepts (way * shot).
    input_shape: shape of one input, e.g. `(28, 28, 1)`.
    label_dtype: int32 labels for classifiers, float32 targets for regressors.
    label_shape: shape of one label (`()` for class ids, `(1,)` for sine).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  module = _AdaptAndPredict(method, num_support, input_shape, label_dtype,
                            label_shape)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=".saved_model."))
  try:
    with method.standard_ops():  # Loadable without this project's kernels.
      tf.saved_model.save(module, str(tmp), signatures={
          "adapt_and_predict": module.adapt_and_predict})
    if path.exists():
      old = path.with_name(path.name + ".old")
      shutil.rmtree(old, ignore_errors=True)
      os.replace(path, old)
      os.replace(tmp, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path
