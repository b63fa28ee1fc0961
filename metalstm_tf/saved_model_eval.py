"""Accuracy of an exported SavedModel on fixed episodes, through its own
signatures (what a user of the file gets, not the training code's graph)."""

import numpy as np
import tensorflow as tf

from metalstm_tf.trainer import mean_and_ci95

SIGNATURES = {"per_query": "adapt_and_predict",
              "transductive": "adapt_and_predict_transductive"}


def evaluate(model, episodes, queries: str = "transductive") -> dict:
  """Mean and 95 % interval (percent) of the query accuracy over `episodes`
  (an iterable of `Episode`s) with the `queries` signature ("per_query" or
  "transductive")."""
  fn = model.signatures[SIGNATURES[queries]]
  values = []
  for e in episodes:
    logits = fn(support_images=tf.convert_to_tensor(e.support_images),
                support_labels=tf.convert_to_tensor(e.support_labels),
                query_images=tf.convert_to_tensor(e.query_images))["logits"]
    predicted = np.argmax(logits.numpy(), -1)
    values.append(100.0 * float(np.mean(predicted ==
                                        np.asarray(e.query_labels))))
  mean, ci95 = mean_and_ci95(values)
  return {"mean": mean, "ci95": ci95, "episodes": len(values)}
