"""Command-line flags: per-dataset defaults and explicit overrides."""

import dataclasses

from absl import flags as absl_flags
from absl.testing import flagsaver
import pytest

from metalstm import flags as metalstm_flags


def _config(*argv):
  with flagsaver.flagsaver():
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(["main.py", *argv])
    return metalstm_flags.config_from_flags()


def test_omniglot_defaults_are_the_papers():
  one = _config("--dataset=omniglot", "--shots=1")
  assert (one.way, one.shot, one.queries) == (5, 1, 15)
  assert (one.inner_steps, one.inner_batch_size) == (12, 5)
  assert (one.episodes, one.val_every, one.val_episodes,
          one.test_episodes) == (75000, 500, 100, 600)
  assert (one.lr, one.clip, one.lr_schedule) == (1e-3, 0.25, "constant")
  assert one.method == "meta_lstm"
  assert one.options.preprocess and not one.options.second_order
  assert not one.augment
  five = _config("--dataset=omniglot", "--shots=5")
  assert (five.inner_steps, five.inner_batch_size, five.episodes) == (
      8, 25, 50000)
  assert _config("--dataset=mini_imagenet", "--shots=1").augment


def test_sine_defaults_are_the_protocol_and_the_measured_best_setting():
  c = _config("--dataset=sine", "--shots=10")
  assert (c.way, c.shot, c.queries, c.inner_steps, c.inner_batch_size) == (
      1, 10, 50, 16, 10)
  assert (c.episodes, c.val_every, c.val_episodes, c.test_episodes) == (
      70000, 2500, 1000, 2000)
  assert c.options.second_order and not c.options.preprocess
  assert c.lr_schedule == "cosine"


def test_plain_lstm_on_sine_defaults_to_its_papers_tuned_setting():
  c = _config("--dataset=sine", "--shots=5", "--method=plain_lstm")
  assert (c.lr, c.meta_batch_size) == (4.7e-3, 4)
  assert (c.options.lstm_units, c.options.lstm_layers,
          c.options.support_passes) == (40, 2, 4)
  c = _config("--dataset=sine", "--shots=5", "--method=plain_lstm",
              "--lr=1e-3", "--meta_batch_size=1", "--lstm_layers=1")
  assert (c.lr, c.meta_batch_size, c.options.lstm_layers) == (1e-3, 1, 1)
  images = _config("--dataset=omniglot", "--method=plain_lstm")
  assert (images.lr, images.meta_batch_size) == (1e-3, 1)
  assert (images.options.lstm_layers, images.options.support_passes) == (1, 2)


def test_explicit_flags_override_the_dataset_defaults():
  c = _config("--dataset=sine", "--shots=5", "--nosecond_order",
              "--preprocess", "--lr_schedule=constant", "--episodes=10")
  assert not c.options.second_order and c.options.preprocess
  assert (c.lr_schedule, c.episodes) == ("constant", 10)
  c = _config("--dataset=omniglot", "--shots=1", "--second_order",
              "--nopreprocess", "--lr_schedule=cosine")
  assert c.options.second_order and not c.options.preprocess
  assert c.lr_schedule == "cosine"
  assert c.fused_kernel and not _config("--nofused_kernel").fused_kernel
  assert c.options.input_gate_scale == 1.0
  assert _config("--input_gate_scale=5").options.input_gate_scale == 5.0
  with pytest.raises(ValueError, match="--input_gate_scale must be positive"):
    _config("--input_gate_scale=-1")
  assert c.multi_step_loss_episodes == 0
  assert _config("--multi_step_loss_episodes=500").multi_step_loss_episodes == 500
  with pytest.raises(ValueError, match="--multi_step_loss_episodes must be"):
    _config("--multi_step_loss_episodes=-1")


def test_patience_is_off_by_default_part_of_the_command_and_mutable():
  assert _config("--dataset=mini_imagenet").patience == 0
  assert "patience" not in metalstm_flags.command_line(
      _config("--dataset=mini_imagenet"))
  stored = _config("--dataset=mini_imagenet", "--patience=15000")
  assert " --patience=15000" in metalstm_flags.command_line(stored)
  with flagsaver.flagsaver():  # A resumed run may change it, or keep it.
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(["main.py", "--patience=5000"])
    assert metalstm_flags.config_from_flags(stored=stored).patience == 5000
    absl_flags.FLAGS.unparse_flags()
    absl_flags.FLAGS(["main.py"])
    assert metalstm_flags.config_from_flags(stored=stored).patience == 15000
  with pytest.raises(ValueError, match="--patience must be 0 .off. or a "
                     "positive number of episodes, got -1"):
    _config("--patience=-1")


def test_unknown_schedule_is_rejected_by_the_parser():
  with pytest.raises(absl_flags.IllegalFlagValueError):
    _config("--lr_schedule=linear")


def test_input_gate_scale_reaches_the_meta_learner(tmp_path):
  from metalstm_tf import builder
  config = dataclasses.replace(
      _config("--dataset=sine", "--input_gate_scale=3"), logdir=str(tmp_path))
  _, method, _ = builder.build(config)
  rule = method.rule
  assert rule.input_gate_scale == 3.0
  assert not rule.forget_toward_init
  assert _config("--forget_toward_init").options.forget_toward_init
  _, method, _ = builder.build(dataclasses.replace(
      _config("--dataset=sine", "--forget_toward_init"), logdir=str(tmp_path)))
  rule = method.rule
  assert rule.forget_toward_init and not rule.per_parameter_lr
  _, method, _ = builder.build(dataclasses.replace(
      _config("--dataset=sine", "--per_parameter_lr"), logdir=str(tmp_path)))
  rule = method.rule
  assert rule.per_parameter_lr
  assert rule.log_alpha.shape == (rule.num_params,)


def test_the_command_line_is_parsed_before_tensorflow_loads(tmp_path):
  """The flags, the method registry and the command's module import without
  TensorFlow (it loads once the flags have parsed), so a mistyped flag or
  --help answers at once; a method's network imports it when built."""
  import subprocess
  import sys
  from conftest import REPO
  script = ("import sys; import metalstm.cli; "
            "from metalstm_tf import methods; "
            "assert all(methods.get(n).options() is not None "
            "for n in methods.names()); "
            "print(sorted(m for m in sys.modules "
            "if m.startswith(('tensorflow', 'keras'))))")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]"
  bad = subprocess.run([sys.executable, "main.py", "--method=nope",
                        f"--logdir={tmp_path / 'run'}"], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
  assert bad.returncode == 1
  assert "--method=nope: value should be one of <meta_lstm|" in bad.stderr
  assert not (tmp_path / "run").exists()


def test_turtle_inputs_help_names_the_update_rules_inputs():
  """--turtle_inputs' help lists its values without importing the update
  rule (TensorFlow); they are the update rule's own."""
  import dataclasses
  from metalstm_tf.methods.turtle import TurtleOptions
  from metalstm_tf.update_rules.turtle import INPUTS
  field, = [f for f in dataclasses.fields(TurtleOptions)
            if f.name == "turtle_inputs"]
  assert str(list(INPUTS)) in field.metadata["help"]
