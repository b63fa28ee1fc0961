"""Training across machines: which process this is in a `TF_CONFIG` cluster.

`tf.distribute.MultiWorkerMirroredStrategy` is configured the standard way,
by the `TF_CONFIG` environment variable of every process, e.g. for the
first of two workers:

  TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
              "task": {"type": "worker", "index": 0}}'

The chief (the `chief` task if the cluster has one, else worker 0) writes
the run's checkpoints, logs and SavedModel; the other workers compute their
share of every meta-batch and write nothing to the run directory.
"""

import json
import os
from typing import NamedTuple


class Role(NamedTuple):
  """This process's place in the cluster."""
  workers: int  # processes taking part (1: no cluster)
  is_chief: bool
  task: str  # e.g. "worker 1"


def role(environ=os.environ) -> Role:
  """The role `TF_CONFIG` gives this process (a single process without
  it). Raises ValueError, saying what is wrong, for a malformed one."""
  text = environ.get("TF_CONFIG", "").strip()
  if not text:
    return Role(1, True, "single process")
  try:
    config = json.loads(text)
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
  except (ValueError, AttributeError, TypeError) as e:
    raise ValueError(
        f"TF_CONFIG is not valid JSON of the form {{\"cluster\": {{\"worker\""
        f": [\"host:port\", ...]}}, \"task\": {{\"type\": \"worker\", "
        f"\"index\": 0}}}} ({e}).") from e
  workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
  if kind not in ("chief", "worker") or workers == 0:
    raise ValueError(
        f"TF_CONFIG's task type must be 'chief' or 'worker' of a cluster "
        f"with workers; it is {kind!r} in {sorted(cluster)}.")
  if index >= len(cluster.get(kind, [])):
    raise ValueError(f"TF_CONFIG's task index {index} is not in its "
                     f"cluster's {len(cluster.get(kind, []))} {kind}s.")
  chief = kind == "chief" or (kind == "worker" and index == 0 and
                              "chief" not in cluster)
  return Role(workers, chief, f"{kind} {index}")
