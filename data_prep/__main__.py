"""Builds or verifies a dataset cache and prints what each split holds.

  python -m data_prep --dataset=omniglot --data_dir=DIR [--json]
"""

import json
import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

import data_prep

FLAGS = absl_flags.FLAGS
absl_flags.DEFINE_enum("dataset", "omniglot", list(data_prep.DATASETS),
                       "Dataset to prepare.")
absl_flags.DEFINE_string("data_dir", None, "Directory holding the dataset "
                         "folders (default: $METALSTM_DATA_DIR, else a "
                         "per-user cache directory).")
absl_flags.DEFINE_string("cache_dir", None, "Where derived arrays are cached "
                         "(default: $METALSTM_CACHE_DIR, else a per-user "
                         "cache directory).")
absl_flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  try:
    splits = data_prep.load_splits(FLAGS.dataset, FLAGS.data_dir,
                                   FLAGS.cache_dir)
  except data_prep.DatasetError as e:
    sys.stderr.write(f"error: {e}\n")
    return 1
  summary = {name: {"classes": s.num_classes,
                    "images_per_class": s.images_per_class}
             for name, s in splits.items()}
  for name, s in splits.items():
    print(f"{FLAGS.dataset} {name:5s}: {s.num_classes:5d} classes x "
          f"{s.images_per_class} images of {'x'.join(map(str, s.image_shape))}")
  if FLAGS.json:
    print(json.dumps(summary))
  return 0


if __name__ == "__main__":
  app.run(main)
