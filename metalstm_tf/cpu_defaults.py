"""Process-wide CPU settings that must be made before TensorFlow is imported.

TensorFlow turns its oneDNN kernels on by default only on CPUs with
AVX-512-class features; on AVX2 CPUs (like this project's machines) it uses
Eigen's, and there oneDNN measured about 2x faster for the Conv-4 learner's
passes (mini-ImageNet 5-way 1-shot: 771 -> 365 ms per episode of learner
passes, RESULTS.md). `main.py`, the benchmarks and the tests call
`prefer_onednn()` first thing; `TF_ENABLE_ONEDNN_OPTS=0` still turns it off.
"""

import os
import sys

from absl import logging


def prefer_onednn() -> None:
  """Sets TF_ENABLE_ONEDNN_OPTS=1 unless the user set it."""
  if "tensorflow" in sys.modules:
    logging.warning("prefer_onednn() called after TensorFlow was imported; "
                    "it has no effect.")
    return
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
