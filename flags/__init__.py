"""Command-line flags of `main.py`, and their translation to a TrainConfig.

Flags left unset take the protocol's defaults for the chosen dataset and
shots (the papers' protocols); library code never reads these flags.
"""

import dataclasses

from absl import flags as absl_flags

from . import predict as _predict_flags  # noqa: F401 (defines flags)
from metalstm_tf import methods
from metalstm_tf.config import CONV_PRECISIONS, LR_SCHEDULES, TrainConfig

FLAGS = absl_flags.FLAGS
DATASETS = ("omniglot", "mini_imagenet", "cub", "sine")

absl_flags.DEFINE_enum("method", "meta_lstm", methods.names(),
                       "Few-shot learning method: " + "; ".join(
                           f"{n}: {methods.get(n).summary}"
                           for n in methods.names()) + ".")

absl_flags.DEFINE_enum("dataset", "omniglot", list(DATASETS),
                       "Benchmark to meta-train on.")
absl_flags.DEFINE_enum("mode", "train", ["train", "test", "export",
                                          "predict", "evaluate"],
                       "train: meta-train (resuming if a checkpoint exists), "
                       "then test the best model and export it; test: "
                       "evaluate the best checkpoint; export: write the "
                       "SavedModel of the best checkpoint; predict: classify "
                       "--query_dir's images after adapting to "
                       "--support_dir's; evaluate: the accuracy of "
                       "--saved_model on its dataset's fixed episodes.")
absl_flags.DEFINE_bool("final_test", True, "--mode=train: after training, "
                       "test the best model and export it. --nofinal_test "
                       "stops after training, so that settings can be "
                       "compared on their validation scores without reading "
                       "the test split; --mode=test with the same --logdir "
                       "tests the chosen one later.")
absl_flags.DEFINE_integer("ways", 5, "Classes per episode (N-way).")
absl_flags.DEFINE_integer("shots", 1, "Support examples per class (K-shot); "
                          "support points for sine.")
absl_flags.DEFINE_integer("queries", None, "Query examples per class "
                          "(default 15; 50 query points for sine).")
absl_flags.DEFINE_integer("inner_steps", None, "Learner updates per episode "
                          "(default: 12 for 1-shot, 8 otherwise; 16 for "
                          "sine; the method's paper's for maml, fomaml "
                          "(1 on Omniglot and sine, 5 on mini-ImageNet), "
                          "meta_sgd (1) and turtle (5)).")
absl_flags.DEFINE_integer("inner_batch_size", None, "Examples per inner "
                          "update (default: the whole support set).")
absl_flags.DEFINE_integer("episodes", None, "Meta-training episodes "
                          "(default: 75,000 for 1-shot, 50,000 otherwise; "
                          "70,000 tasks for sine).")
absl_flags.DEFINE_integer("meta_batch_size", None, "Episodes per "
                          "meta-update (default 1; MAML's protocols: 32 on "
                          "Omniglot, 4 / 2 on mini-ImageNet 1- / 5-shot, 25 "
                          "on sine).")
absl_flags.DEFINE_integer("num_replicas", 1, "tf.distribute replicas the "
                          "episodes of a meta-batch are split across (GPUs "
                          "if there are enough, else logical CPU devices).")
absl_flags.DEFINE_integer("val_every", None, "Episodes between validations "
                          "(default 500; 2,500 for sine).")
absl_flags.DEFINE_integer("val_episodes", None, "Validation episodes "
                          "(default 100; 1,000 for sine).")
absl_flags.DEFINE_integer("patience", 0, "Stop meta-training early, at a "
                          "validation, once the best validation score is "
                          "this many episodes old, then test the best model "
                          "as after a full run (e.g. 15000). 0: train all "
                          "--episodes. May change when a run is resumed.")
absl_flags.DEFINE_integer("test_episodes", None, "Test episodes "
                          "(default 600; 2,000 for sine).")
absl_flags.DEFINE_float("lr", None, "Adam learning rate of the meta-learner "
                        "(default 1e-3; plain_lstm on sine: its paper's "
                        "4.7e-3).")
absl_flags.DEFINE_enum("lr_schedule", None, list(LR_SCHEDULES),
                       "Meta learning-rate schedule: constant or cosine decay "
                       "to zero over --episodes (default: constant, the "
                       "paper; cosine for sine).")
absl_flags.DEFINE_float("clip", 0.25, "Global-norm clip of the meta-gradient.")
absl_flags.DEFINE_integer("multi_step_loss_episodes", 0, "For this many "
                          "episodes the meta-objective is MAML++'s multi-step "
                          "loss: the query losses after every inner step, "
                          "weighted uniformly at first and annealed linearly "
                          "to the last step alone. 0: the paper's final-step "
                          "loss throughout.")
absl_flags.DEFINE_integer("filters", None, "Channels of the Conv-4 learner "
                          "(default 32; MAML's Omniglot protocol 64).")
absl_flags.DEFINE_enum("conv_precision", "float32", list(CONV_PRECISIONS),
                       "The Conv-4 learner's convolutions: float32, or "
                       "bfloat16 (inputs, filters and outputs rounded to "
                       "bfloat16, products summed in float32; faster on "
                       "CPUs that compute bfloat16 natively, e.g. with AMX; "
                       "other numerics). Part of the model: a run keeps "
                       "it.")
absl_flags.DEFINE_integer("image_size", None, "Train on the dataset's "
                          "images resized (area) to this square size "
                          "(default: the dataset's own, 28 for Omniglot, 84 "
                          "for mini-ImageNet).")
absl_flags.DEFINE_integer("channels", None, "Train on the images converted "
                          "to 1 (luminance) or 3 (replicated) channels "
                          "(default: the dataset's own).")
absl_flags.DEFINE_enum("test_dataset", None,
                       ["omniglot", "mini_imagenet", "cub"],
                       "Test on this dataset's test split instead of the "
                       "training dataset's (cross-domain), its images "
                       "adapted to the learner's size and channels; at the "
                       "end of training or with --mode=test.")
absl_flags.DEFINE_bool("xla", None, "Compile the meta-training step with XLA "
                       "(default: off on CPU, where plain graph mode measured "
                       "faster; on when a GPU is present).")
absl_flags.DEFINE_bool("fused_kernel", True, "Run the meta-learner's step "
                       "(both layers) and the Conv-4 learner's batch norm, "
                       "ReLU and max-pool as fused C++ CPU kernels, compiled "
                       "on first use (falls back to TensorFlow ops, with a "
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



def _define_option_flags() -> dict[str, list[str]]:
  """One flag per field of every method's options (fields of the same name
  share it); returns flag name -> the methods it applies to."""
  applies, kinds = {}, {}
  for name in methods.names():
    for field in dataclasses.fields(methods.get(name).options):
      applies.setdefault(field.name, []).append(name)
      kinds.setdefault(field.name, (field.type, field.metadata["help"]))
  definers = {bool: absl_flags.DEFINE_bool, int: absl_flags.DEFINE_integer,
              float: absl_flags.DEFINE_float, str: absl_flags.DEFINE_string,
              tuple: absl_flags.DEFINE_list}
  for flag, (kind, help_text) in kinds.items():
    definers[kind](flag, None, f"[{', '.join(applies[flag])}] {help_text}")
  return applies


OPTION_FLAGS = _define_option_flags()

# Config field -> flag, for the fields that have a flag of another name.
_FIELD_FLAGS = {"way": "ways", "shot": "shots"}
# Settings a run may change when it is resumed or tested: they do not change
# the model it trains.
MUTABLE_FLAGS = ("episodes", "patience", "val_every", "val_episodes",
                 "test_episodes", "checkpoint_every", "xla", "fused_kernel")


class ConfigMismatch(ValueError):
  """A command-line flag contradicts a run's stored configuration."""


def run_logdir(f=FLAGS) -> str:
  """--logdir, or the default run directory the other flags name."""
  way = 1 if f.dataset == "sine" else f.ways
  return f.logdir or f"runs/{f.dataset}_{way}w{f.shots}s_seed{f.seed}"


def flag_values(config: TrainConfig) -> dict:
  """Flag name -> value of every model-defining setting of `config` (the
  log directory excluded: runs may be moved)."""
  out = {}
  for field in dataclasses.fields(config):
    if field.name in ("logdir", "method_options"):
      continue
    out[_FIELD_FLAGS.get(field.name, field.name)] = getattr(config,
                                                            field.name)
  for field in dataclasses.fields(config.method_options):
    value = getattr(config.method_options, field.name)
    out[field.name] = list(value) if isinstance(value, tuple) else value
  return out


def command_line(config: TrainConfig) -> str:
  """The `main.py` command that trains `config` (every model-defining flag
  spelled out; lists comma-separated, booleans as --name / --noname)."""
  parts = []
  for name, value in flag_values(config).items():
    # The run's length (and its early stop, when set) belongs to the
    # command; the other mutable settings (cadences, XLA, kernel) do not
    # change the model.
    in_command = (name not in MUTABLE_FLAGS or name == "episodes" or
                  (name == "patience" and value > 0))
    if value is None or not in_command:
      continue
    if isinstance(value, bool):
      parts.append(f"--{'' if value else 'no'}{name}")
    elif isinstance(value, list):
      parts.append(f"--{name}={','.join(str(v) for v in value)}")
    else:
      parts.append(f"--{name}={value}")
  return "python main.py " + " ".join(parts)


def _gpu_present() -> bool:
  import tensorflow as tf
  return bool(tf.config.list_physical_devices("GPU"))


def _default(value, fallback):
  return fallback if value is None else value


def config_from_flags(f=FLAGS, stored: TrainConfig | None = None
                      ) -> TrainConfig:
  """The run configuration the flags describe.

  With `stored`, the configuration a run recorded, settings not given on the
  command line take their stored values, and a given flag that contradicts
  a stored model-defining setting raises `ConfigMismatch` (the settings of
  `MUTABLE_FLAGS` may change).
  """
  names = set(flag_values(TrainConfig())) | set(OPTION_FLAGS)
  values = {n: f[n].value for n in names}
  present = {n for n in names if f[n].present}
  if stored is not None:
    for name, value in flag_values(stored).items():
      if name not in present:
        values[name] = value
  config = _config_from_values(values, present, run_logdir(f))
  if stored is not None:
    before, after = flag_values(stored), flag_values(config)
    for name in sorted(present - set(MUTABLE_FLAGS)):
      if name in before and after.get(name) != before[name]:
        raise ConfigMismatch(
            f"--{name}={after.get(name)} contradicts the configuration "
            f"stored in {config.logdir}/config.json, which was trained "
            f"with {name}={before[name]}. Omit --{name} to use the stored "
            "value, or give another --logdir for a new run.")
  return config


def _config_from_values(v: dict, present: set, logdir: str) -> TrainConfig:
  """The TrainConfig of flag values `v` (None: the protocol's default)."""
  spec = methods.get(v["method"])
  option_names = {f.name for f in dataclasses.fields(spec.options)}
  for name in sorted(present & set(OPTION_FLAGS) - option_names):
    raise ValueError(f"--{name} does not apply to --method={spec.name} (it "
                     f"applies to {', '.join(OPTION_FLAGS[name])}).")
  sine = v["dataset"] == "sine"
  one_shot = v["shots"] == 1
  way = 1 if sine else v["ways"]
  method_defaults = spec.config_defaults(v["dataset"], v["shots"])
  if sine:  # 16 steps measured better than 8 at 5 and 20 shots (RESULTS.md).
    inner_steps, episodes = 16, 70000
  else:  # The paper: 12 steps for 1-shot, 8 passes otherwise.
    inner_steps, episodes = (12, 75000) if one_shot else (8, 50000)
  options = dataclasses.asdict(spec.default_options(v["dataset"], v["shots"]))
  options.update({n: v[n] for n in option_names if v[n] is not None})
  return TrainConfig(
      dataset=v["dataset"], way=way, shot=v["shots"],
      queries=_default(v["queries"], 50 if sine else 15),
      inner_steps=_default(v["inner_steps"],
                           method_defaults.get("inner_steps", inner_steps)),
      inner_batch_size=_default(v["inner_batch_size"], way * v["shots"]),
      episodes=_default(v["episodes"], episodes),
      meta_batch_size=_default(v["meta_batch_size"],
                               method_defaults.get("meta_batch_size", 1)),
      val_every=_default(v["val_every"], 2500 if sine else 500),
      val_episodes=_default(v["val_episodes"], 1000 if sine else 100),
      patience=v["patience"],
      test_episodes=_default(v["test_episodes"], 2000 if sine else 600),
      lr=_default(v["lr"], method_defaults.get("lr", 1e-3)), clip=v["clip"],
      filters=_default(v["filters"], method_defaults.get("filters", 32)),
      conv_precision=v["conv_precision"],
      image_size=v["image_size"], channels=v["channels"],
      multi_step_loss_episodes=v["multi_step_loss_episodes"],
      # Sine: a decaying rate measured best (RESULTS.md).
      lr_schedule=_default(v["lr_schedule"], "cosine" if sine else "constant"),
      xla=_default(v["xla"], _gpu_present()), fused_kernel=v["fused_kernel"],
      augment=_default(v["augment"], v["dataset"] == "mini_imagenet"),
      seed=v["seed"], logdir=logdir, checkpoint_every=v["checkpoint_every"],
      method=spec.name, method_options=spec.options(**options))
