"""SavedModel export of a trained meta-learner.

The exported module has one signature,

    adapt_and_predict(support_images, support_labels, query_images)
        -> {"logits": [num_query, way]}   (regression: [num_query, 1])

that runs the learned optimizer inside the graph: it adapts the learner from
c_0 on the support set and classifies the queries. Loading it needs only
TensorFlow (`tf.saved_model.load`), not this project.
"""

import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from metalstm_tf import inner_loop
from metalstm_tf.learners.base import Learner
from metalstm_tf.update_rules.base import UpdateRule


class _AdaptAndPredict(tf.Module):

  def __init__(self, learner: Learner, rule: UpdateRule, num_steps: int,
               batch_size: int, num_support: int, input_shape, label_dtype,
               label_shape):
    super().__init__()
    self.learner, self.rule = learner, rule
    self.meta_variables = [v.value if hasattr(v, "value") else v
                           for v in rule.weights]
    self.num_steps, self.batch_size = num_steps, batch_size
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
    result = inner_loop.adapt(self.learner, self.rule, support_images,
                              support_labels, self.num_steps, self.batch_size)
    return {"logits": self.learner.apply_theta(result.theta, query_images)}


def export_saved_model(path, learner: Learner, rule: UpdateRule,
                       num_steps: int, batch_size: int, num_support: int,
                       input_shape, label_dtype=tf.int32,
                       label_shape=()) -> pathlib.Path:
  """Writes the SavedModel to `path` atomically (temporary dir, then rename).

  Args:
    num_support: support-set size the signature accepts (way * shot).
    input_shape: shape of one input, e.g. `(28, 28, 1)`.
    label_dtype: int32 labels for classifiers, float32 targets for regressors.
    label_shape: shape of one label (`()` for class ids, `(1,)` for sine).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  module = _AdaptAndPredict(learner, rule, num_steps, batch_size, num_support,
                            input_shape, label_dtype, label_shape)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=path.parent, prefix=".saved_model."))
  try:
    with rule.standard_ops():  # Loadable without this project's kernels.
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
