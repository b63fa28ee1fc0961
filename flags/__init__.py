"""Command-line flags of `main.py`, and their translation to a TrainConfig.

Flags left unset take the protocol's defaults for the chosen dataset and
shots (BRIEF §1 and §5); library code never reads these flags.
"""

from absl import flags as absl_flags

from metalstm_tf.config import LR_SCHEDULES, TrainConfig

FLAGS = absl_flags.FLAGS
DATASETS = ("omniglot", "mini_imagenet", "sine")

absl_flags.DEFINE_enum("dataset", "omniglot", list(DATASETS),
                       "Benchmark to meta-train on.")
absl_flags.DEFINE_enum("mode", "train", ["train", "test", "export"],
                       "train: meta-train (resuming if a checkpoint exists), "
                       "then test the best model and export it; test: "
                       "evaluate the best checkpoint; export: write the "
                       "SavedModel of the best checkpoint.")
absl_flags.DEFINE_integer("ways", 5, "Classes per episode (N-way).")
absl_flags.DEFINE_integer("shots", 1, "Support examples per class (K-shot); "
                          "support points for sine.")
absl_flags.DEFINE_integer("queries", None, "Query examples per class "
                          "(default 15; 50 query points for sine).")
absl_flags.DEFINE_integer("inner_steps", None, "Learner updates per episode "
                          "(default: 12 for 1-shot, 8 otherwise; 16 for "
                          "sine).")
absl_flags.DEFINE_integer("inner_batch_size", None, "Examples per inner "
                          "update (default: the whole support set).")
absl_flags.DEFINE_integer("episodes", None, "Meta-training episodes "
                          "(default: 75,000 for 1-shot, 50,000 otherwise; "
                          "70,000 tasks for sine).")
absl_flags.DEFINE_integer("meta_batch_size", 1, "Episodes per meta-update.")
absl_flags.DEFINE_integer("num_replicas", 1, "tf.distribute replicas the "
                          "episodes of a meta-batch are split across (GPUs "
                          "if there are enough, else logical CPU devices).")
absl_flags.DEFINE_integer("val_every", None, "Episodes between validations "
                          "(default 500; 2,500 for sine).")
absl_flags.DEFINE_integer("val_episodes", None, "Validation episodes "
                          "(default 100; 1,000 for sine).")
absl_flags.DEFINE_integer("test_episodes", None, "Test episodes "
                          "(default 600; 2,000 for sine).")
absl_flags.DEFINE_float("lr", 1e-3, "Adam learning rate of the meta-learner.")
absl_flags.DEFINE_enum("lr_schedule", None, list(LR_SCHEDULES),
                       "Meta learning-rate schedule: constant or cosine decay "
                       "to zero over --episodes (default: constant, the "
                       "paper; cosine for sine).")
absl_flags.DEFINE_float("clip", 0.25, "Global-norm clip of the meta-gradient.")
absl_flags.DEFINE_integer("hidden_size", 20, "Hidden units of the "
                          "meta-learner's first (LSTM) layer.")
absl_flags.DEFINE_float("input_gate_scale", 1.0, "The meta cell subtracts "
                       "input_gate_scale * i_t * grad: the learned learning "
                       "rate ranges over (0, input_gate_scale). 1 is the "
                       "paper's cell.")
absl_flags.DEFINE_bool("forget_toward_init", False, "The meta cell's forget "
                       "gate decays the learner's parameters toward their "
                       "meta-learned initialisation theta_0 instead of toward "
                       "zero: theta_t = theta_0 + f_t * (theta_{t-1} - "
                       "theta_0) - i_t * grad. Off: the paper's cell.")
absl_flags.DEFINE_bool("per_parameter_lr", False, "Learn a positive "
                       "step-size multiplier alpha for each learner parameter "
                       "(Meta-SGD's per-parameter learning rate): the meta "
                       "cell subtracts alpha * i_t * grad. Off: the paper's "
                       "cell.")
absl_flags.DEFINE_integer("multi_step_loss_episodes", 0, "For this many "
                          "episodes the meta-objective is MAML++'s multi-step "
                          "loss: the query losses after every inner step, "
                          "weighted uniformly at first and annealed linearly "
                          "to the last step alone. 0: the paper's final-step "
                          "loss throughout.")
absl_flags.DEFINE_integer("filters", 32, "Channels of the Conv-4 learner.")
absl_flags.DEFINE_bool("preprocess", None, "Log/sign-preprocess the loss and "
                       "gradient fed to the meta-learner; --nopreprocess "
                       "feeds them raw (default: on, the paper; off for sine).")
absl_flags.DEFINE_bool("second_order", None, "Back-propagate through the "
                       "learner's gradients (second-order meta-gradients; "
                       "default: off, the paper's first order; on for sine).")
absl_flags.DEFINE_bool("xla", None, "Compile the meta-training step with XLA "
                       "(default: off on CPU, where plain graph mode measured "
                       "faster; on when a GPU is present).")
absl_flags.DEFINE_bool("fused_kernel", True, "Run the meta-learner's step "
                       "(both layers) as a fused C++ CPU kernel, compiled on "
                       "first use (falls back to TensorFlow ops, with a "
                       "warning, where it cannot be built; not used with "
                       "--xla). --nofused_kernel: TensorFlow ops only.")
absl_flags.DEFINE_bool("augment", None, "Augment training episodes (default: "
                       "on for mini_imagenet, off otherwise).")
absl_flags.DEFINE_integer("seed", 0, "Seed of initial weights and episodes.")
absl_flags.DEFINE_integer("checkpoint_every", 100, "Episodes between "
                          "checkpoints.")
absl_flags.DEFINE_string("data_dir", None, "Directory holding omniglot/ and "
                         "mini-imagenet/ (default: $METALSTM_DATA_DIR, else "
                         "~/.cache/metalstm/data; Omniglot is downloaded "
                         "there when missing).")
absl_flags.DEFINE_string("cache_dir", None, "Directory of derived array "
                         "caches (default: $METALSTM_CACHE_DIR, else "
                         "~/.cache/metalstm/cache).")
absl_flags.DEFINE_string("logdir", None, "Directory of checkpoints, "
                         "TensorBoard logs and the SavedModel (default: "
                         "runs/<dataset>_<ways>w<shots>s_seed<seed>).")


def _gpu_present() -> bool:
  import tensorflow as tf
  return bool(tf.config.list_physical_devices("GPU"))


def _default(value, fallback):
  return fallback if value is None else value


def config_from_flags(f=FLAGS) -> TrainConfig:
  """The run configuration the flags describe."""
  sine = f.dataset == "sine"
  one_shot = f.shots == 1
  way = 1 if sine else f.ways
  queries = _default(f.queries, 50 if sine else 15)
  if sine:  # 16 steps measured better than 8 at 5 and 20 shots (RESULTS.md).
    inner_steps = _default(f.inner_steps, 16)
    episodes = _default(f.episodes, 70000)
  else:  # The paper: 12 steps for 1-shot, 8 passes otherwise.
    inner_steps = _default(f.inner_steps, 12 if one_shot else 8)
    episodes = _default(f.episodes, 75000 if one_shot else 50000)
  logdir = _default(
      f.logdir, f"runs/{f.dataset}_{way}w{f.shots}s_seed{f.seed}")
  return TrainConfig(
      dataset=f.dataset, way=way, shot=f.shots, queries=queries,
      inner_steps=inner_steps,
      inner_batch_size=_default(f.inner_batch_size, way * f.shots),
      episodes=episodes, meta_batch_size=f.meta_batch_size,
      val_every=_default(f.val_every, 2500 if sine else 500),
      val_episodes=_default(f.val_episodes, 1000 if sine else 100),
      test_episodes=_default(f.test_episodes, 2000 if sine else 600),
      lr=f.lr, clip=f.clip, hidden_size=f.hidden_size, filters=f.filters,
      input_gate_scale=f.input_gate_scale,
      forget_toward_init=f.forget_toward_init,
      per_parameter_lr=f.per_parameter_lr,
      multi_step_loss_episodes=f.multi_step_loss_episodes,
      # Sine: second order on raw inputs with a decaying rate measured best
      # (RESULTS.md); image datasets keep the paper's setting.
      lr_schedule=_default(f.lr_schedule, "cosine" if sine else "constant"),
      preprocess=_default(f.preprocess, not sine),
      second_order=_default(f.second_order, sine),
      xla=_default(f.xla, _gpu_present()), fused_kernel=f.fused_kernel,
      augment=_default(f.augment, f.dataset == "mini_imagenet"),
      seed=f.seed, logdir=logdir, checkpoint_every=f.checkpoint_every)
