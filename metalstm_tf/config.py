"""Frozen configuration of a meta-training run (built by `flags/`)."""

import dataclasses
import math
from typing import Any

LR_SCHEDULES = ("constant", "cosine")
CONV_PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs; defaults are the Ravi & Larochelle 1-shot ones.

  Attributes:
    dataset: 'omniglot', 'mini_imagenet' or 'sine'.
    way, shot, queries: N-way, K-shot episodes with `queries` per class
      (for sine: K support points and `queries` query points).
    inner_steps: updates of the learner per episode.
    inner_batch_size: examples per inner update.
    episodes: meta-training episodes.
    meta_batch_size: episodes per meta-update.
    val_every, val_episodes: validation cadence and size.
    patience: stop meta-training early, at a validation, once the best
      validation score is this many episodes old; the best model is then
      tested as after a full run. 0: train all `episodes`.
    test_episodes: episodes of the final test.
    lr, clip: Adam learning rate and global gradient-norm clip.
    lr_schedule: 'constant' (the paper) or 'cosine' (decays `lr` to zero
      along a half cosine over the run's meta-updates).
    multi_step_loss_episodes: for this many episodes the meta-objective is
      MAML++'s multi-step loss, the query losses after every inner step with
      weights annealed from uniform to the last step alone
      (`trainer.multi_step_weights`); 0: the paper's final-step loss.
    filters: channels of the Conv-4 learner.
    conv_precision: the Conv-4 learner's convolutions in 'float32' (the
      default) or 'bfloat16' (inputs, filters and outputs rounded to
      bfloat16, the products summed in float32; faster where the CPU
      computes bfloat16 natively, e.g. with AMX).
    image_size, channels: train on the dataset's images adapted to this
      size (square) and channel count (`data_prep.adapt`); None: as the
      dataset stores them.
    xla: compile the meta-training step with XLA.
    fused_kernel: run the meta-learner's step (both layers) and the Conv-4
      learner's blocks after their convolutions as fused C++ CPU kernels
      (`metalstm_tf/kernels`) when they build here; never under XLA.
    augment: augment training episodes.
    seed: seed of initial weights and of the episode streams.
    logdir: where checkpoints, summaries and the SavedModel go.
    checkpoint_every: episodes between checkpoints.
    method: the `--method` name (`metalstm_tf.methods`).
    method_options: that method's frozen options dataclass (None: its
      defaults for this dataset and shot count).
  """
  dataset: str = "omniglot"
  way: int = 5
  shot: int = 1
  queries: int = 15
  inner_steps: int = 12
  inner_batch_size: int = 5
  episodes: int = 75000
  meta_batch_size: int = 1
  val_every: int = 500
  val_episodes: int = 100
  patience: int = 0
  test_episodes: int = 600
  lr: float = 1e-3
  clip: float = 0.25
  lr_schedule: str = "constant"
  multi_step_loss_episodes: int = 0
  filters: int = 32
  conv_precision: str = "float32"
  image_size: int | None = None
  channels: int | None = None
  xla: bool = False
  fused_kernel: bool = True
  augment: bool = False
  seed: int = 0
  logdir: str = "runs/default"
  checkpoint_every: int = 100
  method: str = "meta_lstm"
  method_options: Any = None

  def __post_init__(self):
    for name in ("way", "shot", "queries", "inner_steps", "inner_batch_size",
                 "episodes", "meta_batch_size", "val_every", "val_episodes",
                 "test_episodes", "filters",
                 "checkpoint_every"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        flag = {"way": "ways", "shot": "shots"}.get(name, name)
        raise ValueError(f"--{flag} must be a positive integer, got "
                         f"{value!r}. Set it to 1 or more.")
    for name in ("lr", "clip"):
      value = getattr(self, name)
      if not (isinstance(value, (int, float)) and math.isfinite(value) and
              value > 0):
        raise ValueError(f"--{name} must be a positive finite number, got "
                         f"{value!r}.")
    for name in ("multi_step_loss_episodes", "patience"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 0:
        raise ValueError(f"--{name} must be 0 (off) or a positive number of "
                         f"episodes, got {value!r}.")
    from metalstm_tf import methods  # registers them; imports TensorFlow
    spec = methods.get(self.method)
    if self.method_options is None:
      object.__setattr__(self, "method_options",
                         spec.default_options(self.dataset, self.shot))
    elif type(self.method_options) is not spec.options:
      raise TypeError(f"method_options of {self.method!r} must be "
                      f"{spec.options.__name__}, got "
                      f"{type(self.method_options).__name__}.")
    if self.image_size is not None and (not isinstance(self.image_size, int)
                                        or self.image_size < 16):
      raise ValueError(f"--image_size must be 16 or more (4 pooling layers), "
                       f"got {self.image_size!r}.")
    if self.channels not in (None, 1, 3):
      raise ValueError(f"--channels must be 1 (grayscale) or 3 (RGB), got "
                       f"{self.channels!r}.")
    if self.dataset == "sine" and (self.image_size or self.channels):
      raise ValueError("--image_size and --channels apply to image datasets, "
                       "not --dataset=sine.")
    if self.conv_precision not in CONV_PRECISIONS:
      raise ValueError(f"--conv_precision must be one of "
                       f"{', '.join(CONV_PRECISIONS)}, got "
                       f"{self.conv_precision!r}.")
    if self.dataset == "sine" and self.conv_precision != "float32":
      raise ValueError("--conv_precision applies to the Conv-4 learner of "
                       "the image datasets, not --dataset=sine.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"--lr_schedule must be one of {', '.join(LR_SCHEDULES)}"
                       f", got {self.lr_schedule!r}.")

  def image_shape(self, native: tuple[int, int, int]) -> tuple[int, int, int]:
    """The learner's input shape: `native` (the dataset's) with
    `image_size` and `channels` applied."""
    h, w, c = native
    size = self.image_size
    return (size or h, size or w, self.channels or c)

  @property
  def options(self):
    """Shorthand for `method_options`."""
    return self.method_options

  def to_dict(self) -> dict:
    """JSON-ready: the general fields and `method_options` as a dict."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["method_options"] = dataclasses.asdict(self.method_options)
    return out

  @classmethod
  def from_dict(cls, values: dict) -> "TrainConfig":
    """Inverse of `to_dict`; also reads the flat records of runs made
    before `--method` existed (the meta-learner LSTM's options then sat
    beside the general fields)."""
    from metalstm_tf import methods
    values = dict(values)
    method = values.setdefault("method", "meta_lstm")
    spec = methods.get(method)
    names = {f.name for f in dataclasses.fields(spec.options)}
    options = values.pop("method_options", None)
    if options is None:
      options = {k: values.pop(k) for k in list(values) if k in names}
    general = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - general
    if unknown:
      raise ValueError(f"Unknown configuration fields {sorted(unknown)}.")
    defaults = dataclasses.asdict(spec.default_options(
        values.get("dataset", "omniglot"), values.get("shot", 1)))
    defaults.update(options)
    return cls(**values, method_options=spec.options(**defaults))
