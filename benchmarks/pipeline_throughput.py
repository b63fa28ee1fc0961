"""Episodes per second the tf.data pipeline delivers (no training).

  python benchmarks/pipeline_throughput.py --data_dir=../shared/datasets

Prints one line per configuration: Omniglot 5-way 1-shot (15 queries, no
augmentation, the default) and mini-ImageNet 5-way 5-shot with augmentation.
Targets on a 2-core machine: 200 and 50 episodes/s.
"""

import time

from absl import app
from absl import flags

import data_prep
from metalstm_tf import pipeline

flags.DEFINE_string("data_dir", None, "Dataset directory.")
flags.DEFINE_string("cache_dir", None, "Cache directory.")
flags.DEFINE_integer("episodes", 1000, "Episodes timed per configuration.")
FLAGS = flags.FLAGS

CONFIGS = [
    ("omniglot", 5, 1, 15, False, 200),
    ("mini_imagenet", 5, 5, 15, True, 50),
]


def main(argv):
  del argv
  for dataset, way, shot, queries, augment, target in CONFIGS:
    split = data_prep.load_split(dataset, "train", FLAGS.data_dir,
                                 FLAGS.cache_dir)
    ds = pipeline.episode_dataset(split, way, shot, queries, seed=0,
                                  num_episodes=FLAGS.episodes + 20,
                                  augment=augment)
    it = iter(ds)
    for _ in range(20):  # warm-up: tracing, thread pools, page cache
      next(it)
    start = time.perf_counter()
    n = sum(1 for _ in it)
    rate = n / (time.perf_counter() - start)
    print(f"pipeline {dataset} {way}-way {shot}-shot queries={queries} "
          f"augment={augment}: {rate:.1f} episodes/s (target >= {target})",
          flush=True)


if __name__ == "__main__":
  app.run(main)
