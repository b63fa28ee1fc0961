"""Training across processes: MultiWorkerMirroredStrategy by TF_CONFIG, two
workers on loopback ports against one process on the same meta-batches."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from helpers import short_sine_command

# Trains the tiny synthetic run for `episodes` in `logdir` (resuming if it
# has checkpoints) and saves every meta-parameter and Adam slot to `out`.
_TRAIN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import pathlib
    import numpy as np, tensorflow as tf
    from metalstm_tf import builder, methods, tasks
    from metalstm_tf.trainer import MetaTrainer
    from helpers import synthetic_splits, tiny_config
    strategy = builder.make_strategy(1)
    logdir, episodes, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cfg = tiny_config(pathlib.Path(logdir), meta_batch_size=2,
                      episodes=episodes, val_every=4, checkpoint_every=2,
                      logdir=logdir)
    task = tasks.image_task(synthetic_splits(), cfg)
    with strategy.scope():
      method = methods.build(cfg, task.learner)
    trainer = MetaTrainer(task, method, cfg, strategy)
    trainer.fit()
    arrays = [v.numpy() for v in method.trainable_variables]
    arrays += [v.numpy() for v in trainer.optimizer.variables]
    np.savez(out, *arrays, episode=trainer.episode.numpy(),
             replicas=trainer.replicas, chief=trainer.role.is_chief)
""").format(tests=str(REPO / "tests"))


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _single(logdir, episodes, out):
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  proc = subprocess.run([sys.executable, "-c", _TRAIN, str(logdir),
                         str(episodes), str(out)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return np.load(out)


def _two_workers(logdir, episodes, outs):
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index, out in enumerate(outs):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(logdir), str(episodes), str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True))
  for proc in procs:
    try:
      _, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      pytest.fail("the workers did not finish")
    assert proc.returncode == 0, err[-3000:]
  return [np.load(out) for out in outs]


def _assert_same(a, b):
  keys = [k for k in a.files if k.startswith("arr_")]
  assert len(keys) > 14 and keys == [k for k in b.files
                                     if k.startswith("arr_")]
  for k in keys:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=2e-5, err_msg=k)


@pytest.mark.slow
def test_two_workers_make_the_single_process_meta_updates(tmp_path):
  """2 workers x 1 episode == 1 process x 2 episodes per meta-update; only
  the chief writes the run directory; the same command resumes."""
  single = _single(tmp_path / "single", 4, tmp_path / "single.npz")
  chief, other = _two_workers(tmp_path / "cluster", 4,
                              [tmp_path / "w0.npz", tmp_path / "w1.npz"])
  assert int(single["replicas"]) == 1 and int(chief["replicas"]) == 2
  assert bool(chief["chief"]) and not bool(other["chief"])
  assert int(chief["episode"]) == int(other["episode"]) == 4
  _assert_same(chief, single)
  _assert_same(other, chief)
  run = tmp_path / "cluster"
  assert sorted(p.name for p in (run / "checkpoints").iterdir()
                if p.name.startswith("ckpt-4."))  # written once, by the chief
  assert not any("worker" in p.name for p in run.rglob("*"))
  # Resumed by the same command with more episodes: as one process resumed.
  single = _single(tmp_path / "single", 8, tmp_path / "single8.npz")
  chief, other = _two_workers(run, 8, [tmp_path / "w0b.npz",
                                       tmp_path / "w1b.npz"])
  assert int(chief["episode"]) == 8
  _assert_same(chief, single)
  _assert_same(other, chief)


@pytest.mark.slow
def test_the_command_line_trains_on_two_workers(tmp_path):
  """`python main.py` under TF_CONFIG: the chief trains, tests and exports;
  the other worker trains its share and exits."""
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  command = short_sine_command(tmp_path / "run", episodes=8,
                               meta_batch_size=2, val_every=4,
                               checkpoint_every=None)
  procs = [subprocess.Popen(
      command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=dict(os.environ, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})))
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for proc, (_, err) in zip(procs, outs):
    assert proc.returncode == 0, err[-3000:]
  assert "RESULT dataset=sine" in outs[0][0]
  assert "RESULT" not in outs[1][0] and "worker 1: training done" in outs[1][1]
  run = tmp_path / "run"
  assert (run / "config.json").is_file() and (run / "saved_model").is_dir()
  assert "ckpt-8.index" in {p.name for p in (run / "checkpoints").iterdir()}


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "must be 'chief' or 'worker'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
     '"index": 3}}', "index 3 is not in"),
])
def test_a_bad_tf_config_says_what_is_wrong(text, message):
  from metalstm_tf import cluster
  with pytest.raises(ValueError, match=message):
    cluster.role({"TF_CONFIG": text})


def test_roles():
  from metalstm_tf import cluster
  two = {"worker": ["a:1", "b:1"]}
  assert cluster.role({}) == cluster.Role(1, True, "single process")
  assert cluster.role({"TF_CONFIG": json.dumps(
      {"cluster": two, "task": {"type": "worker", "index": 1}})}) == (
          cluster.Role(2, False, "worker 1"))
  with_chief = {"cluster": {**two, "chief": ["c:1"]},
                "task": {"type": "worker", "index": 0}}
  assert not cluster.role({"TF_CONFIG": json.dumps(with_chief)}).is_chief
