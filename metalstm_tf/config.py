"""Frozen configuration of a meta-training run (built by `flags/`)."""

import dataclasses

LR_SCHEDULES = ("constant", "cosine")


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
    test_episodes: episodes of the final test.
    lr, clip: Adam learning rate and global gradient-norm clip.
    lr_schedule: 'constant' (the paper) or 'cosine' (decays `lr` to zero
      along a half cosine over the run's meta-updates).
    hidden_size: layer-1 hidden units of the meta-learner.
    input_gate_scale: upper end of the learned learning rate: the cell
      subtracts `input_gate_scale * i_t * grad` (1: the paper).
    forget_toward_init: the forget gate decays the learner's parameters
      toward the meta-learned initialisation instead of toward zero (False:
      the paper).
    per_parameter_lr: learn a step-size multiplier for each learner
      parameter (Meta-SGD's alpha) on top of the input gate (False: the
      paper).
    multi_step_loss_episodes: for this many episodes the meta-objective is
      MAML++'s multi-step loss, the query losses after every inner step with
      weights annealed from uniform to the last step alone
      (`trainer.multi_step_weights`); 0: the paper's final-step loss.
    filters: channels of the Conv-4 learner.
    preprocess: log/sign preprocessing of the meta-learner's inputs.
    second_order: differentiate through the learner's gradients.
    xla: compile the meta-training step with XLA.
    fused_kernel: run the meta-learner's step (both layers) as the fused C++ CPU
      kernel (`metalstm_tf/kernels`) when it builds here; never under XLA.
    augment: augment training episodes.
    seed: seed of initial weights and of the episode streams.
    logdir: where checkpoints, summaries and the SavedModel go.
    checkpoint_every: episodes between checkpoints.
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
  test_episodes: int = 600
  lr: float = 1e-3
  clip: float = 0.25
  lr_schedule: str = "constant"
  hidden_size: int = 20
  input_gate_scale: float = 1.0
  forget_toward_init: bool = False
  per_parameter_lr: bool = False
  multi_step_loss_episodes: int = 0
  filters: int = 32
  preprocess: bool = True
  second_order: bool = False
  xla: bool = False
  fused_kernel: bool = True
  augment: bool = False
  seed: int = 0
  logdir: str = "runs/default"
  checkpoint_every: int = 100

  def __post_init__(self):
    for name in ("way", "shot", "queries", "inner_steps", "inner_batch_size",
                 "episodes", "meta_batch_size", "val_every", "val_episodes",
                 "test_episodes", "hidden_size", "filters",
                 "checkpoint_every"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        flag = {"way": "ways", "shot": "shots"}.get(name, name)
        raise ValueError(f"--{flag} must be a positive integer, got "
                         f"{value!r}. Set it to 1 or more.")
    if self.lr <= 0 or self.clip <= 0:
      raise ValueError(f"--lr and --clip must be positive, got {self.lr} and "
                       f"{self.clip}.")
    if not self.input_gate_scale > 0:
      raise ValueError("--input_gate_scale must be positive, got "
                       f"{self.input_gate_scale!r}. 1 is the paper's cell.")
    if (not isinstance(self.multi_step_loss_episodes, int) or
        self.multi_step_loss_episodes < 0):
      raise ValueError("--multi_step_loss_episodes must be 0 (off) or a "
                       "positive number of episodes, got "
                       f"{self.multi_step_loss_episodes!r}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"--lr_schedule must be one of {', '.join(LR_SCHEDULES)}"
                       f", got {self.lr_schedule!r}.")
