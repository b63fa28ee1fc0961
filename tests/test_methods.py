"""The conformance suite: every registered method passes every test here.

Parametrised over `metalstm_tf.methods.REGISTRY` (plus the meta-learner
LSTM with all its cell options on), so a new method is tested by
registering it. Where a property does not apply, the method's declared
capabilities (`uses_gradients`, `second_order`) say so, never its name.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from helpers import build, tiny_config
from metalstm_tf import export, methods

CASES = [(name, {}) for name in methods.names()] + [
    ("meta_lstm", {"forget_toward_init": True, "per_parameter_lr": True,
                   "input_gate_scale": 2.0})]
IDS = [name + ("+options" if options else "") for name, options in CASES]


def _config(tmp_path, case, **overrides):
  name, options = case
  args = dict(options)
  if name in ("maml", "fomaml", "adaptive_sgd"):
    args.setdefault("inner_lr", 0.01)
  if name == "meta_sgd":
    args.setdefault("alpha_low", 0.01)
    args.setdefault("alpha_high", 0.02)
  args.update(overrides)
  return tiny_config(tmp_path, method=name, **args)


def _weights(method):
  return [v.numpy().copy() for v in method.trainable_variables]


def _batch(task):
  return next(iter(task.train_dataset(0)))


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
  return request.param


def test_shapes_and_finite_non_zero_meta_gradients(tmp_path, case):
  config = _config(tmp_path, case)
  task, method, trainer = build(config)
  episode = tf.nest.map_structure(lambda t: t[0], _batch(task))
  out = method.run(episode.support_images, episode.support_labels,
                   episode.query_images)
  assert out.outputs.shape == (config.way * config.queries, config.way)
  assert method.trainable_variables
  grads, stats = trainer._meta_gradients(_batch(task))
  assert np.isfinite(float(stats["loss"]))
  for g, v in zip(grads, method.trainable_variables):
    assert g is not None, v.path
    g = g.numpy()
    assert np.isfinite(g).all(), v.path
    assert np.abs(g).max() > 0, v.path


def test_first_and_second_order_are_what_the_method_declares(tmp_path, case):
  """A second-order method's meta-gradient keeps the path through the
  learner's gradients: cutting that path changes it. A first-order one has
  cut it already: keeping it would change the meta-gradient."""
  task, method, trainer = build(_config(tmp_path, case))
  if not method.uses_gradients:
    pytest.skip("the method is not fed the learner's gradients")
  batch = _batch(task)
  declared, _ = trainer._meta_gradients(batch)
  declared_order = method.second_order
  method._second_order = not declared_order  # the other variant, same weights
  other, _ = tf.function(trainer._meta_gradients_impl)(batch)
  method._second_order = declared_order
  difference = max(float(tf.reduce_max(tf.abs(a - b)))
                   for a, b in zip(declared, other))
  scale = max(float(tf.reduce_max(tf.abs(a))) for a in declared)
  assert difference > 1e-4 * scale
  # The declared variant is the one the trainer computes, again.
  again, _ = trainer._meta_gradients(batch)
  for a, b in zip(declared, again):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.fixture
def deterministic_ops():
  """TensorFlow's deterministic kernels for one test (XLA has no
  deterministic max-pool gradient, so they must not outlive it)."""
  from tensorflow.python.framework import config
  config.enable_op_determinism()
  yield
  config.disable_op_determinism()


def test_fits_one_synthetic_episode(tmp_path, case, deterministic_ops):
  # Deterministic kernels: with lr = 1e-2 a reduction order that varies with
  # the machine's load could decide whether a run of 100 steps settles.
  config = _config(tmp_path, case, lr=1e-2, clip=1.0)
  task, method, trainer = build(config)
  episode = _batch(task)
  # Query set = support set: the adapted learner must fit it.
  episode = episode._replace(query_images=episode.support_images,
                             query_labels=episode.support_labels)
  first = float(trainer.train_step(episode)["loss"])
  steps = [trainer.train_step(episode) for _ in range(100)]
  # The loss reaches half its start and the support set is fitted exactly
  # (at lr = 1e-2 a method may then oscillate: the best step is judged).
  best = min(steps, key=lambda st: float(st["loss"]))
  assert float(best["loss"]) < 0.5 * first
  assert max(float(st["metric"]) for st in steps) == 1.0


def test_seeded_runs_repeat_and_resume_exactly(tmp_path, case,
                                               deterministic_ops):
  """A seeded run interrupted after 5 episodes and resumed by a new trainer
  ends with the meta-parameters of the same run made straight through, bit
  for bit: the seed alone fixes the run (episodes are drawn from the seed
  and the episode counter), and the checkpoint holds all of its state
  (weights, optimizer slots, episode counter, best validation)."""
  _, method_a, straight = build(_config(tmp_path / "a", case))
  straight.fit()

  def interrupt(episode, total, stats):
    if episode == 5:
      raise KeyboardInterrupt
  _, _, first = build(_config(tmp_path / "c", case))
  with pytest.raises(KeyboardInterrupt):
    first.fit(on_progress=interrupt)
  assert first.manager.latest_checkpoint.endswith("ckpt-5")
  _, method_c, resumed = build(_config(tmp_path / "c", case))  # a new process
  resumed.fit()
  assert int(resumed.episode.numpy()) == 8
  assert int(resumed.optimizer.iterations.numpy()) == 8
  for a, c in zip(_weights(method_a), _weights(method_c)):
    np.testing.assert_array_equal(a, c)
  assert float(resumed.best_metric.numpy()) == float(
      straight.best_metric.numpy())


def test_xla_and_graph_steps_agree(tmp_path, case):
  results = []
  for xla in (False, True):
    # 5 shots: batch norm over 15 images is better conditioned than over 3.
    # Two inner steps carry the update rule's state from one step to the
    # next, as any longer loop does (XLA compiles each step: a third would
    # add compile time, not coverage).
    task, method, trainer = build(_config(tmp_path / str(xla), case, xla=xla,
                                          shot=5, inner_batch_size=15,
                                          inner_steps=2))
    batch = _batch(task)
    grads, stats = trainer._meta_gradients(batch)
    trainer.train_step(batch)
    results.append((grads, float(stats["loss"]), _weights(method)))
  (g0, l0, w0), (g1, l1, w1) = results
  assert l0 == pytest.approx(l1, rel=1e-4)
  # Second-order meta-gradients through batch norm over few images amplify
  # float32 rounding (XLA orders sums differently): relative differences of
  # about 1e-2 of the largest entry were measured at these sizes.
  tolerance = 2e-2 if trainer.method.second_order else 1e-3
  for a, b in zip(g0, g1):
    scale = float(np.abs(a.numpy()).max())
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-3,
                               atol=tolerance * scale + 1e-8)
  # Adam divides by sqrt(v): where a gradient is ~0 its rounding can flip
  # the sign of that entry's step (lr = 1e-3), hence the absolute tolerance.
  for a, b in zip(w0, w1):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2.1e-3)


def test_saved_model_runs_without_the_project(tmp_path, case):
  """The SavedModel, loaded by plain TensorFlow in another process: both
  signatures reproduce the trainer's transductive and per-query accuracy; a
  query alone gets the logits it gets within a batch; the support may come
  in any class order and with more shots than trained; bad labels fail with
  a message; the metadata reads back."""
  config = _config(tmp_path, case)
  task, method, trainer = build(config)
  assert method.trainable_variables
  for v in method.trainable_variables:  # far from any initial value
    v.assign(v + 0.05 * np.random.default_rng(0).normal(
        size=v.shape).astype(np.float32))
  path = export.export_saved_model(tmp_path / "sm", method,
                                   task.learner.example_shape,
                                   metadata={"ways": config.way})
  episodes = list(task.eval_dataset("test", 3))
  np.savez(tmp_path / "ep.npz",
           **{f"{f}{i}": getattr(e, f).numpy()
              for i, e in enumerate(episodes) for f in e._fields})
  expected = {mode: [float(trainer.eval_step(e, mode == "transductive")[
      "metric"]) for e in episodes] for mode in ("transductive", "per_query")}
  script = textwrap.dedent(f"""
      import sys, json, numpy as np, tensorflow as tf
      m = tf.saved_model.load({str(path)!r})
      d = np.load({str(tmp_path / 'ep.npz')!r})
      c = tf.constant
      out = {{}}
      for name, key in (("adapt_and_predict", "per_query"),
                        ("adapt_and_predict_transductive", "transductive")):
        f = m.signatures[name]
        acc = []
        for i in range(3):
          logits = f(support_images=c(d[f"support_images{{i}}"]),
                     support_labels=c(d[f"support_labels{{i}}"]),
                     query_images=c(d[f"query_images{{i}}"]))["logits"]
          pred = np.argmax(logits.numpy(), -1)
          acc.append(float(np.mean(pred == d[f"query_labels{{i}}"])))
        out[key] = acc
      f = m.signatures["adapt_and_predict"]
      sx, sy, qx = d["support_images0"], d["support_labels0"], d["query_images0"]
      batch = f(support_images=c(sx), support_labels=c(sy),
                query_images=c(qx))["logits"].numpy()
      alone = np.concatenate([f(support_images=c(sx), support_labels=c(sy),
                                query_images=c(qx[j:j + 1]))["logits"].numpy()
                              for j in range(len(qx))])
      out["alone_vs_batch"] = float(np.abs(alone - batch).max())
      order = np.argsort(-sy, kind="stable")  # other class order
      other = f(support_images=c(sx[order]), support_labels=c(sy[order]),
                query_images=c(qx))["logits"].numpy()
      out["reordered"] = float(np.abs(other - batch).max())
      three = f(support_images=c(np.concatenate([sx, sx[::-1], sx])),
                support_labels=c(np.concatenate([sy, sy[::-1], sy])),
                query_images=c(qx))["logits"].numpy()
      out["three_shots"] = [list(three.shape), bool(np.isfinite(three).all())]
      try:
        f(support_images=c(sx), support_labels=c(sy + 1), query_images=c(qx))
        out["bad_labels"] = "accepted"
      except tf.errors.InvalidArgumentError as e:
        out["bad_labels"] = e.message
      out["metadata"] = json.loads(
          m.signatures["metadata"]()["json"].numpy().decode())
      assert not any(k.startswith(("metalstm_tf", "data_prep")) for k in sys.modules)
      print(json.dumps(out))
  """)
  env = dict(os.environ, PYTHONPATH="")
  run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, cwd=tmp_path, env=env)
  assert run.returncode == 0, run.stderr[-2000:]
  got = json.loads(run.stdout.splitlines()[-1])
  for mode in ("transductive", "per_query"):
    np.testing.assert_allclose(got[mode], expected[mode], atol=1e-6)
  assert got["alone_vs_batch"] < 1e-4
  assert got["reordered"] < 1e-4
  assert got["three_shots"] == [[config.way * config.queries, config.way],
                                True]
  assert f"class ids in [0, {config.way})" in got["bad_labels"]
  assert got["metadata"]["ways"] == config.way
  assert got["metadata"] == export.read_metadata(path)


def test_every_method_has_documented_frozen_options():
  for name in methods.names():
    spec = methods.get(name)
    options = spec.default_options("omniglot", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(options, "anything", None)
    for field in dataclasses.fields(options):
      assert field.metadata.get("help"), (name, field.name)
    assert spec.summary


def test_protonet_logits_are_negative_squared_distances_to_class_means(
    tmp_path):
  task, method, _ = build(tiny_config(tmp_path, method="protonet",
                                      shot=2, inner_batch_size=6))
  episode = tf.nest.map_structure(lambda t: t[0], _batch(task))
  logits = method.run(episode.support_images, episode.support_labels,
                      episode.query_images).outputs.numpy()
  support = method.embed(episode.support_images).numpy().astype(np.float64)
  query = method.embed(episode.query_images).numpy().astype(np.float64)
  labels = episode.support_labels.numpy()
  want = np.stack([-((query - support[labels == c].mean(0)) ** 2).sum(1)
                   for c in range(3)], axis=1)
  np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-3)
  # The prototypes do not depend on the order of the support set.
  order = np.random.default_rng(0).permutation(len(labels))
  shuffled = method.run(tf.gather(episode.support_images, order),
                        tf.gather(episode.support_labels, order),
                        episode.query_images).outputs.numpy()
  np.testing.assert_allclose(shuffled, logits, rtol=1e-4, atol=1e-3)


def test_run_both_predicts_as_run_does_each_way(tmp_path, case):
  """`run_both` gives the queries' predictions `run` gives per query and
  transductively (a method may adapt once for both)."""
  task, method, _ = build(_config(tmp_path, case))
  for episode in task.eval_dataset("test", 2):
    args = (episode.support_images, episode.support_labels,
            episode.query_images)
    both = method.run_both(*args)
    assert sorted(both) == ["per_query", "transductive"]
    for queries, out in both.items():
      alone = method.run(*args, transductive=queries == "transductive")
      np.testing.assert_allclose(out.outputs.numpy(), alone.outputs.numpy(),
                                 rtol=1e-6, atol=1e-6)
