"""Meta-training of the meta-learner LSTM: gate figure, a real run, replicas,
non-finite values, schedules, multi-step loss (the properties every method
shares are in test_methods.py)."""

import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from conftest import REPO
from helpers import build, tiny_config
from metalstm_tf import inner_loop


def _weights(rule):
  return [v.numpy().copy() for v in rule.trainable_variables]


def test_test_split_writes_gate_figure(tmp_path):
  task, rule, trainer = build(tiny_config(tmp_path))
  trainer.fit()
  trainer.restore_best()
  result = trainer.test()
  assert result["episodes"] == 4 and 0 <= result["mean"] <= 100
  assert result["input_gate_tracked"].shape == (4, 3, 8)
  png = (tmp_path / "run" / "gates.png").read_bytes()
  assert png.startswith(b"\x89PNG")
  rows = (tmp_path / "run" / "test_episodes.csv").read_text().splitlines()
  assert rows[0] == "episode,accuracy,loss" and len(rows) == 5
  values = np.array([float(r.split(",")[1]) for r in rows[1:]])
  np.testing.assert_allclose(values.mean(), result["mean"], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.real_data
def test_short_real_omniglot_run_beats_chance(tmp_path, real_data_dir,
                                               shared_cache_dir):
  """`main.py` end to end on real Omniglot: a few hundred episodes give well
  above the 20% of chance, a RESULT line and a SavedModel."""
  out = subprocess.run(
      [sys.executable, "main.py", "--dataset=omniglot", "--shots=1",
       "--episodes=300", "--val_every=150", "--val_episodes=50",
       "--test_episodes=50", f"--data_dir={real_data_dir}",
       f"--cache_dir={shared_cache_dir}", f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO, timeout=1200)
  assert out.returncode == 0, out.stderr[-3000:]
  per_query, last = out.stdout.strip().splitlines()[-2:]
  m = re.fullmatch(
      r"RESULT dataset=omniglot ways=5 shots=1 split=test metric=accuracy "
      r"mean=([\d.]+) ci95=([\d.]+) episodes=50 method=meta_lstm "
      r"queries=transductive", last)
  assert m, last
  m_per_query = re.fullmatch(
      r"RESULT .* mean=([\d.]+) ci95=[\d.]+ episodes=50 method=meta_lstm "
      r"queries=per_query", per_query)
  assert m_per_query and float(m_per_query.group(1)) >= 40.0, per_query
  vals = [float(v) for v in re.findall(
      r"Validation at episode \d+: accuracy ([\d.]+)", out.stderr)]
  assert len(vals) == 2 and max(vals) >= 60.0, vals
  assert float(m.group(1)) >= 60.0
  assert (tmp_path / "run" / "saved_model" / "saved_model.pb").is_file()
  assert (tmp_path / "run" / "gates.png").is_file()
  # --mode=test with no training flags reads the run's configuration back
  # and reproduces its RESULT line exactly.
  record = (tmp_path / "run" / "config.json").read_text()
  again = subprocess.run(
      [sys.executable, "main.py", "--mode=test",
       f"--data_dir={real_data_dir}", f"--cache_dir={shared_cache_dir}",
       f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.strip().splitlines()[-1] == last
  # A flag contradicting the stored configuration is refused by name.
  wrong = subprocess.run(
      [sys.executable, "main.py", "--mode=test", "--shots=5",
       f"--data_dir={real_data_dir}", f"--cache_dir={shared_cache_dir}",
       f"--logdir={tmp_path / 'run'}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert wrong.returncode == 2
  assert "--shots=5 contradicts" in wrong.stderr and "shots=1" in wrong.stderr
  # Neither rewrote the training run's record; both tests are in the history.
  assert (tmp_path / "run" / "config.json").read_text() == record
  history = (tmp_path / "run" / "results_history.txt").read_text()
  assert history.count("RESULT dataset=omniglot") == 4  # 2 runs x 2 lines
  metadata = json.loads(
      (tmp_path / "run" / "saved_model" / "metadata.json").read_text())
  assert metadata["test"]["transductive"]["mean"] == float(m.group(1))
  assert metadata["ways"] == 5 and metadata["input_convention"]["invert"]


def test_meta_batch_split_across_replicas_matches_one_device(tmp_path):
  """tf.distribute: 2 replicas x 1 episode == 1 device x 2 episodes."""
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(REPO / 'tests')!r})
      import numpy as np, tensorflow as tf
      from metalstm_tf import builder, tasks
      from metalstm_tf import methods
      from metalstm_tf.trainer import MetaTrainer
      from helpers import synthetic_splits, tiny_config
      strategy = builder.make_strategy(2)
      out = []
      for name, strat in (("one", tf.distribute.get_strategy()),
                          ("two", strategy)):
        cfg = tiny_config(__import__("pathlib").Path({str(tmp_path)!r}) / name,
                          meta_batch_size=2, episodes=4, val_every=100)
        task = tasks.image_task(synthetic_splits(), cfg)
        with strat.scope():
          rule = methods.build(cfg, task.learner)
        trainer = MetaTrainer(task, rule, cfg, strat)
        assert trainer.replicas == (1 if name == "one" else 2)
        trainer.fit()
        # Adam's moments reveal the gradient's scale as well as direction.
        out.append([v.numpy() for v in rule.trainable_variables] +
                   [v.numpy() for v in trainer.optimizer.variables])
      assert len(out[0]) == len(out[1]) > 14
      for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5)
      print("OK")
  """)
  out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, cwd=REPO)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_test_mode_without_a_trained_model_says_so(tmp_path, real_data_dir,
                                                   shared_cache_dir):
  out = subprocess.run(
      [sys.executable, "main.py", "--mode=test", f"--data_dir={real_data_dir}",
       f"--cache_dir={shared_cache_dir}", f"--logdir={tmp_path / 'empty'}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert out.returncode == 1
  assert "No trained run" in out.stderr and "--mode=train" in out.stderr
  assert not (tmp_path / "empty").exists()


def test_non_finite_episode_does_not_poison_the_meta_learner(tmp_path):
  task, rule, trainer = build(tiny_config(tmp_path))
  batch = next(iter(task.train_dataset(0)))
  bad = batch._replace(support_images=batch.support_images * np.inf)
  stats = trainer.train_step(bad)
  assert int(stats["skipped"]) == 1
  assert all(np.isfinite(w).all() for w in _weights(rule))
  stats = trainer.train_step(batch)
  assert int(stats["skipped"]) == 0
  assert all(np.isfinite(w).all() for w in _weights(rule))


def test_non_finite_meta_parameters_stop_the_run_and_are_never_saved(
    tmp_path):
  from metalstm_tf.trainer import NonFiniteError
  _, method, trainer = build(tiny_config(tmp_path))
  variable = method.trainable_variables[0]

  def diverge(episode, total, stats):  # as if a meta-update had blown up
    if episode == 5:
      variable.assign(tf.fill(variable.shape, np.nan))
  with pytest.raises(NonFiniteError, match="last good checkpoint.*ckpt-4"):
    trainer.fit(on_progress=diverge)
  with pytest.raises(NonFiniteError, match="not saving"):
    trainer.save()
  assert trainer.manager.latest_checkpoint.endswith("ckpt-4")


def test_nan_validation_is_never_the_best(tmp_path):
  _, _, trainer = build(tiny_config(tmp_path))
  assert trainer._is_better(50.0)
  assert not trainer._is_better(float("nan"))
  trainer.best_metric.assign(50.0)
  assert not trainer._is_better(float("nan"))
  assert trainer._is_better(60.0) and not trainer._is_better(40.0)


def test_cosine_schedule_decays_over_the_run_and_survives_resume(tmp_path):
  config = tiny_config(tmp_path, lr_schedule="cosine", meta_batch_size=2,
                       lr=1e-3)  # 8 episodes = 4 meta-updates.
  seen = {}

  def interrupt(episode, total, stats):
    seen[episode] = trainer.current_lr()
    if episode == 4:
      raise KeyboardInterrupt
  _, _, trainer = build(config)
  assert trainer.current_lr() == pytest.approx(1e-3)
  with pytest.raises(KeyboardInterrupt):
    trainer.fit(on_progress=interrupt)
  assert seen[2] == pytest.approx(1e-3 * (1 + np.cos(np.pi / 4)) / 2)
  assert seen[4] == pytest.approx(0.5e-3)
  _, _, resumed = build(config)
  resumed.restore_latest()
  assert resumed.current_lr() == pytest.approx(0.5e-3)
  resumed.fit()
  assert resumed.current_lr() == pytest.approx(0.0, abs=1e-12)


def test_a_checkpoint_without_optimizer_state_serves_a_test_not_training(
    tmp_path):
  """A copy of a best checkpoint (no optimizer state) in checkpoints/: a
  test or export reads the run's counters from it; resuming training
  refuses it instead of going on with a fresh optimizer."""
  config = tiny_config(tmp_path, episodes=4, val_every=2)
  _, _, trainer = build(config)
  trainer.fit()
  best = pathlib.Path(trainer.best_manager.latest_checkpoint)
  ckpt_dir = tmp_path / "copy" / "checkpoints"
  ckpt_dir.mkdir(parents=True)
  for f in best.parent.glob(best.name + ".*"):
    shutil.copy(f, ckpt_dir)
  (ckpt_dir / "checkpoint").write_text(
      f'model_checkpoint_path: "{best.name}"\n')
  copy = dataclasses.replace(config, logdir=str(tmp_path / "copy"))
  _, _, reader = build(copy)
  assert reader.restore_latest(for_training=False)
  assert int(reader.episode.numpy()) == int(trainer.best_episode.numpy())
  _, _, resumer = build(copy)
  with pytest.raises(AssertionError, match="not bound to checkpointed"):
    resumer.restore_latest()


def test_patience_stops_at_the_validation_that_finds_the_best_too_old(
    tmp_path):
  """--patience=4, validations every 2 episodes, a best score no validation
  can beat (100 %, pinned at episode 0): training stops at episode 4 of 20
  with a checkpoint there, a resume with the same setting stays stopped,
  and patience 0 resumes it to the end."""
  config = tiny_config(tmp_path, episodes=20, val_every=2, patience=4)
  _, _, trainer = build(config)
  trainer.best_metric.assign(100.0)
  trainer.best_episode.assign(0)
  validated = []
  original = trainer.validate
  trainer.validate = lambda: validated.append(
      int(trainer.episode.numpy())) or original()
  trainer.fit()
  assert validated == [2, 4]
  assert int(trainer.episode.numpy()) == 4
  assert trainer.manager.latest_checkpoint.endswith("ckpt-4")
  _, _, again = build(config)
  again.fit()
  assert int(again.episode.numpy()) == 4
  assert again.manager.latest_checkpoint.endswith("ckpt-4")
  _, _, unlimited = build(dataclasses.replace(config, patience=0))
  unlimited.fit()
  assert int(unlimited.episode.numpy()) == 20


def test_unknown_lr_schedule_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="--lr_schedule must be one of"):
    tiny_config(tmp_path, lr_schedule="linear")


def test_running_stats_skip_a_non_finite_episode(tmp_path):
  task, _, trainer = build(tiny_config(tmp_path, episodes=6, val_every=6))
  clean = task.train_dataset

  def with_a_bad_episode(start):
    def poison(i, batch):
      scale = tf.where(i == 1, np.inf, 1.0)
      return batch._replace(support_images=batch.support_images * scale)
    return clean(start).enumerate().map(poison)
  trainer.task = dataclasses.replace(task, train_dataset=with_a_bad_episode)
  seen = []
  trainer.fit(on_progress=lambda episode, total, stats: seen.append(stats))
  assert len(seen) == 6
  assert all(np.isfinite(s["loss"]) and np.isfinite(s["metric"])
             for s in seen)


def test_per_parameter_lr_is_learned_and_logged_per_layer(tmp_path):
  """--per_parameter_lr: the meta-gradient moves every layer's alpha off its
  initial 1, and TensorBoard gets each layer's alpha (histogram and mean)."""
  config = tiny_config(tmp_path, per_parameter_lr=True)
  task, method, trainer = build(config)
  trainer.fit()
  alpha = np.exp(method.rule.log_alpha.numpy())
  offsets = task.learner.layout.offsets()
  moved = {name.split("/")[-1]: bool(np.abs(alpha[a:b] - 1.0).max() > 1e-4)
           for name, (a, b) in offsets.items()}
  # A conv bias feeding training-mode batch norm has a zero gradient, so its
  # step (and alpha's meta-gradient) is zero: only those stay at 1.
  assert moved == {name: not re.fullmatch(r"conv\d_bias", name)
                   for name in moved}
  tags = {}
  for path in (tmp_path / "run" / "train").glob("events*"):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        tags[value.tag] = event.step
  for name, (start, stop) in offsets.items():
    assert tags.get(f"alpha/{name}") == config.episodes
    assert tags.get(f"alpha/{name}/mean") == config.episodes


def test_multi_step_weights_anneal_to_the_last_step():
  from metalstm_tf.trainer import multi_step_weights
  np.testing.assert_allclose(multi_step_weights(0, 100, 4).numpy(), 0.25)
  np.testing.assert_allclose(multi_step_weights(50, 100, 4).numpy(),
                             [0.125, 0.125, 0.125, 0.625])
  for episode in (100, 250):
    np.testing.assert_array_equal(multi_step_weights(episode, 100, 4).numpy(),
                                  [0, 0, 0, 1])


@pytest.mark.parametrize("episode", [0, 6])
def test_multi_step_loss_is_the_weighted_query_loss_of_every_step(
    tmp_path, episode):
  """--multi_step_loss_episodes=4: the meta-gradient of a fresh run is that
  of the mean query loss over the inner steps; past 4 episodes it is the
  paper's (final step only)."""
  config = tiny_config(tmp_path, multi_step_loss_episodes=4,
                       second_order=True)
  task, method, trainer = build(config)
  rule = method.rule
  trainer.episode.assign(episode)
  batch = next(iter(task.train_dataset(0)))
  grads, stats = trainer._meta_gradients(batch)
  ep = tf.nest.map_structure(lambda t: t[0], batch)
  with tf.GradientTape(persistent=True) as tape:
    result = inner_loop.adapt(task.learner, rule, ep.support_images,
                              ep.support_labels, config.inner_steps,
                              config.inner_batch_size, second_order=True,
                              keep_trajectory=True)
    losses = [task.learner.loss(task.learner.apply_theta(
        theta, ep.query_images), ep.query_labels)
              for theta in result.trajectory]
    objective = tf.add_n(losses) / len(losses) if episode == 0 else losses[-1]
  want = tape.gradient(objective, rule.trainable_variables)
  np.testing.assert_allclose(float(stats["loss"]), float(losses[-1]),
                             rtol=1e-5)
  assert len(result.trajectory) == config.inner_steps
  np.testing.assert_array_equal(result.trajectory[-1].numpy(),
                                result.theta.numpy())
  for g, w in zip(grads, want):
    # float32 sums in a different order: tolerance relative to the tensor's
    # scale, so an entry that is ~0 in both may differ in sign.
    scale = float(np.abs(w.numpy()).max())
    np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4,
                               atol=1e-5 * scale)
  if episode == 0:  # which is not the final-step gradient
    final = tape.gradient(losses[-1], rule.trainable_variables)
    assert max(float(tf.reduce_max(tf.abs(g - f)))
               for g, f in zip(grads, final)) > 1e-4


@pytest.mark.parametrize("second_signal", [False, True])
def test_a_signal_during_a_meta_update_still_resumes_exactly(
    tmp_path, second_signal):
  """The command line's handler as a signal would call it, in the middle of
  the meta-update of episode 5 (after the update is applied, before the
  episode counter moves). One signal: the run stops at the next boundary and
  saves a consistent checkpoint; a second one: it stops at once and keeps
  the last checkpoint. Either way the resumed run ends where an
  uninterrupted one does."""
  import signal
  from metalstm import cli
  _, method, straight = build(tiny_config(tmp_path / "a"))
  straight.fit()
  _, _, trainer = build(tiny_config(tmp_path / "b"))
  stop = cli._StopRequest()
  step = trainer.train_step

  def step_with_a_signal(batch):
    stats = step(batch)
    if int(trainer.episode.numpy()) == 4:  # the update of episode 5 is in
      stop(signal.SIGTERM, None)
      if second_signal:
        stop(signal.SIGTERM, None)  # raises here, inside the meta-update
    return stats
  trainer.train_step = step_with_a_signal
  with pytest.raises(KeyboardInterrupt):
    trainer.fit(stop_requested=stop)
  saved = trainer.manager.latest_checkpoint
  assert saved.endswith("ckpt-4" if second_signal else "ckpt-5")
  _, resumed_method, resumed = build(tiny_config(tmp_path / "b"))
  resumed.fit()
  for a, b in zip(method.trainable_variables,
                  resumed_method.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-8)


def test_training_logs_its_speed_and_long_evaluations_their_progress(
    tmp_path, monkeypatch):
  from metalstm_tf import trainer as trainer_module
  _, _, trainer = build(tiny_config(tmp_path))
  trainer.fit()
  rates = {}
  for path in (tmp_path / "run" / "train").glob("events*"):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == "episodes_per_second":
          rates[event.step] = float(tf.make_ndarray(value.tensor))
  assert list(rates) == [8] and rates[8] > 0

  # Every episode of this evaluation "takes" 61 s: each one is reported.
  clock = iter(range(0, 100_000, 61))
  monkeypatch.setattr(trainer_module.time, "time", lambda: next(clock))
  reports = []
  monkeypatch.setattr(trainer_module.logging, "info",
                      lambda fmt, *args: reports.append(fmt % args))
  result = trainer.evaluate("val", 3)
  progress = [r for r in reports if r.startswith("Evaluating on val")]
  assert progress == [
      f"Evaluating on val: {i} of 3 episodes, accuracy "
      f"{np.mean(result['values'][:i]):.4g} so far." for i in (1, 2, 3)]


def test_a_test_of_both_ways_reads_what_two_tests_read(tmp_path):
  """`test_both` adapts each test episode once and predicts its queries per
  query and transductively: the same episode values, CSVs and summaries as
  `test(transductive=False)` and `test()`."""
  _, _, trainer = build(tiny_config(tmp_path, test_episodes=5))
  both = trainer.test_both()
  run = tmp_path / "run"
  written = {f: (run / f).read_text() for f in
             ("test_episodes.csv", "test_episodes_per_query.csv")}
  for queries, transductive in (("per_query", False), ("transductive", True)):
    alone = trainer.test(transductive=transductive)
    assert both[queries]["episodes"] == 5
    np.testing.assert_allclose(both[queries]["values"], alone["values"],
                               rtol=1e-6)
    np.testing.assert_allclose(both[queries]["losses"], alone["losses"],
                               rtol=1e-5)
    for k in alone:
      if k.endswith("_tracked"):
        np.testing.assert_allclose(both[queries][k], alone[k], rtol=1e-5)
  assert written == {f: (run / f).read_text() for f in written}
  assert (run / "test_per_query").is_dir() and (run / "test").is_dir()
