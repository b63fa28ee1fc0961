"""Sine-wave regression: task sampler, MLP learner, a short meta-training."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from helpers import short_sine_command, tiny_config
from metalstm.results import parse_result_line
from metalstm_tf import builder, sine
from metalstm_tf.learners import MLPLearner
from metalstm_tf.sampling import episode_rng


def _with_repo_on_path():
  """The environment for a script under benchmarks/: the repository on
  PYTHONPATH, so it imports this checkout's metalstm_tf whether or not (or
  wherever) the package is installed."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
  return env


def test_task_ranges_and_reproducibility():
  tasks = [sine.sample_task(episode_rng(0, i), 5, 50) for i in range(300)]
  amps = np.array([t.amplitude for t in tasks])
  phases = np.array([t.phase for t in tasks])
  xs = np.concatenate([np.r_[t.support_x, t.query_x] for t in tasks])
  assert 0.1 <= amps.min() and amps.max() <= 5.0 and amps.std() > 1.0
  assert 0.0 <= phases.min() and phases.max() <= np.pi
  assert -5.0 <= xs.min() and xs.max() <= 5.0
  t = tasks[0]
  assert t.support_x.shape == (5, 1) and t.query_y.shape == (50, 1)
  np.testing.assert_allclose(t.query_y, t.amplitude * np.sin(t.query_x -
                                                             t.phase),
                             rtol=1e-5, atol=1e-6)
  again = sine.sample_task(episode_rng(0, 0), 5, 50)
  np.testing.assert_array_equal(again.support_x, t.support_x)
  other = sine.sample_task(episode_rng(1, 0), 5, 50)
  assert other.amplitude != t.amplitude


def test_dataset_is_reproducible_and_resumable():
  a = list(sine.task_dataset(5, 50, seed=3, num_tasks=4))
  b = list(sine.task_dataset(5, 50, seed=3, start=2, num_tasks=2))
  np.testing.assert_array_equal(a[2].query_labels, b[0].query_labels)
  np.testing.assert_array_equal(a[3].support_images, b[1].support_images)


def test_eval_task_is_the_eval_streams_task(tmp_path):
  config = tiny_config(tmp_path, dataset="sine", way=1, shot=5, queries=50)
  streamed = list(sine.sine_task(config).eval_dataset("test", 3))
  for i, episode in enumerate(streamed):
    t = sine.eval_task(config, "test", i)
    np.testing.assert_array_equal(episode.support_images, t.support_x)
    np.testing.assert_array_equal(episode.query_labels, t.query_y)
  assert sine.eval_task(config, "val", 0).amplitude != sine.eval_task(
      config, "test", 0).amplitude


def test_mlp_forward_matches_a_plain_keras_mlp():
  learner = MLPLearner((1, 40, 40, 1), seed=0)
  model = keras.Sequential([keras.Input((1,)),
                            keras.layers.Dense(40, activation="relu"),
                            keras.layers.Dense(40, activation="relu"),
                            keras.layers.Dense(1)])
  rng = np.random.default_rng(0)
  params = [rng.normal(size=w.shape).astype(np.float32)
            for w in learner.trainable_weights]
  model.set_weights(params)
  x = rng.uniform(-5, 5, (32, 1)).astype(np.float32)
  theta = learner.layout.flatten([tf.constant(p) for p in params])
  np.testing.assert_allclose(learner.apply_theta(theta, x), model(x),
                             rtol=1e-5, atol=1e-5)
  assert learner.layout.size == 1 * 40 + 40 + 40 * 40 + 40 + 40 + 1


def test_short_meta_training_beats_the_unadapted_initialisation(tmp_path):
  config = tiny_config(tmp_path, dataset="sine", way=1, shot=10, queries=50,
                       inner_steps=5, inner_batch_size=10, episodes=600,
                       val_every=300, val_episodes=50, test_episodes=100,
                       hidden_size=20, lr=3e-3)
  task, method, trainer = builder.build(config)
  learner = task.learner

  def unadapted_mse():
    return np.mean([float(learner.metric(
        method.unadapted_outputs(e.query_images),
        e.query_labels)) for e in task.eval_dataset("test", 100)])

  before = unadapted_mse()
  trainer.fit()
  trainer.restore_best()
  result = trainer.test()
  assert result["mean"] < unadapted_mse()  # adaptation helps ...
  assert result["mean"] < 0.8 * before  # ... and meta-training too
  assert (tmp_path / "run" / "predictions.png").read_bytes()[:4] == b"\x89PNG"


def _final_weights(logdir):
  reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("rule/")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The reference: the interrupted runs' command, run straight through."""
  logdir = tmp_path_factory.mktemp("straight") / "run"
  out = subprocess.run(_INTERRUPT_COMMAND + [f"--logdir={logdir}"], cwd=REPO,
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, TF_DETERMINISTIC_OPS="1"))
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout.strip().splitlines()[-1], _final_weights(logdir)


_INTERRUPT_COMMAND = [
    sys.executable, "main.py", "--dataset=sine", "--shots=5",
    "--episodes=400", "--val_every=100", "--val_episodes=10",
    "--test_episodes=4", "--hidden_size=4", "--checkpoint_every=50"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 0.0),
                                        (signal.SIGTERM, 1.3)])
def test_interrupted_command_resumes_bit_for_bit(tmp_path, sig, delay,
                                                 uninterrupted):
  """Ctrl-C or kill at any moment: a checkpoint, exit code 130, and the same
  command continues to the same meta-parameters and RESULT line, bit for
  bit, as a run that was never interrupted."""
  command = _INTERRUPT_COMMAND + [f"--logdir={tmp_path / 'run'}"]
  env = dict(os.environ, TF_DETERMINISTIC_OPS="1")
  log = tmp_path / "stderr.txt"
  with open(log, "w") as err:
    proc = subprocess.Popen(command, cwd=REPO, stderr=err, env=env,
                            stdout=subprocess.DEVNULL)
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    while not list(checkpoints.glob("ckpt-*.index")):  # training is under way
      assert proc.poll() is None and time.time() < deadline, log.read_text()
      time.sleep(0.2)
    time.sleep(delay)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
  output = log.read_text()
  saved = re.search(r"Interrupted: saved \S+ckpt-(\d+)", output)
  assert saved, output[-3000:]
  episode = int(saved.group(1))
  assert 0 < episode < 400
  resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                           timeout=600, env=env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"at episode {episode}." in resumed.stderr
  line, weights = uninterrupted
  assert resumed.stdout.strip().splitlines()[-1] == line
  got = _final_weights(tmp_path / "run")
  assert got.keys() == weights.keys() and weights
  for name, value in weights.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)
  if sig != signal.SIGTERM:
    return
  # The finished run feeds the error-analysis script, which re-adapts on the
  # same test tasks and must reproduce the run's test MSE and its CSV.
  reported = float(re.search(r"mean=(\S+)", resumed.stdout).group(1))
  rows = (tmp_path / "run" / "test_episodes.csv").read_text().splitlines()
  assert rows[0] == "episode,mse,loss" and len(rows) == 5
  per_task = [float(r.split(",")[1]) for r in rows[1:]]
  assert sum(per_task) / 4 == pytest.approx(reported, rel=1e-3, abs=1e-5)
  moved = (tmp_path / "run").rename(tmp_path / "moved")  # users move runs
  analysis = subprocess.run(
      [sys.executable, "benchmarks/sine_errors.py", f"--logdir={moved}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=_with_repo_on_path())
  assert analysis.returncode == 0, analysis.stderr[-3000:]
  mean = float(re.search(r"query MSE: mean (\S+)", analysis.stdout).group(1))
  assert mean == pytest.approx(reported, rel=1e-3, abs=1e-5)
  assert "support MSE after adaptation" in analysis.stdout


def test_console_shows_no_tensorflow_info_lines(tmp_path):
  """At the default verbosity the console has the progress bar, this
  project's log lines and the RESULT line, not TensorFlow's INFO chatter
  (e.g. a 'Sharding callback duration' line at every checkpoint)."""
  out = subprocess.run(short_sine_command(tmp_path / "run"), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  python_info = re.findall(r"^I\d{4} [\d:.]+ +\d+ (\S+?\.py):\d+\]",
                           out.stderr, re.MULTILINE)
  assert python_info and set(python_info) <= {"cli.py", "trainer.py"}, (
      set(python_info))
  # TensorFlow's C++ notices (oneDNN, CUDA probing), written before its
  # logging is set up, are kept out too.
  native = re.findall(r"^[IE]\d{4} .*\.cc:\d+\].*$", out.stderr, re.MULTILINE)
  assert not native, native
  assert "absl::InitializeLog" not in out.stderr
  assert "INFO:tensorflow" not in out.stderr
  assert "Validation at episode 40" in out.stderr


def test_nofinal_test_trains_without_reading_the_test_split(tmp_path):
  run = tmp_path / "run"
  out = subprocess.run(short_sine_command(run, final_test=False), cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "RESULT" not in out.stdout
  assert "not tested (--nofinal_test)" in out.stderr
  assert (run / "best").is_dir() and (run / "val").is_dir()
  for name in ("test", "result.txt", "results_history.txt", "saved_model"):
    assert not (run / name).exists(), name
  # The chosen setting is tested later, once.
  test = subprocess.run(
      [sys.executable, "main.py", "--mode=test", f"--logdir={run}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert test.returncode == 0, test.stderr[-3000:]
  assert re.search(r"^RESULT dataset=sine .*split=test .*episodes=5 ",
                   test.stdout, re.M)
  # Its export records that test, the episodes trained and the best
  # validation score, as the export at the end of training does.
  export = subprocess.run(
      [sys.executable, "main.py", "--mode=export", f"--logdir={run}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert export.returncode == 0, export.stderr[-3000:]
  metadata = json.loads((run / "saved_model" / "metadata.json").read_text())
  result = parse_result_line(test.stdout.strip().splitlines()[-1])
  assert metadata["test"] == {"transductive": {
      "mean": float(result["mean"]), "ci95": float(result["ci95"]),
      "episodes": 5}}
  assert metadata["trained_episodes"] == 40
  validation = {int(e): float(v) for e, v in re.findall(
      r"Validation at episode (\d+): mse ([\d.]+)", out.stderr)}
  best_episode = min(validation, key=validation.get)
  assert metadata["validation"]["best_episode"] == best_episode
  assert metadata["validation"]["best"] == pytest.approx(
      validation[best_episode], abs=1e-4)
