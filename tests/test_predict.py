"""`--mode=predict` and the input conventions: a user's image folders
classified by an exported model."""

import csv
import dataclasses
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_prep import conventions
from helpers import build, synthetic_splits, tiny_config
from metalstm_tf import export
from metalstm_tf import predict as predict_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
# The synthetic task's images: 16x16 grayscale, stored inverted like Omniglot.
SMALL = dataclasses.replace(conventions.OMNIGLOT, height=16, width=16)


def _write(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  """A briefly trained 3-way model exported with the synthetic convention,
  and the test split it can be checked on."""
  tmp = tmp_path_factory.mktemp("predict")
  config = tiny_config(tmp, episodes=4)
  task, method, trainer = build(config)
  trainer.fit()
  path = export.export_saved_model(
      tmp / "sm", method, task.learner.example_shape,
      metadata={"task": "classification", "ways": config.way,
                "input_convention": SMALL.as_dict()})
  return path, task, method


def _folders(tmp_path, task, shots=2, queries=4):
  """Support and query folders of test-split images as a user has them:
  dark strokes on white (the inverse of the arrays), PNG files."""
  images = synthetic_splits()["test"].images  # [classes, n, 16, 16, 1] uint8
  for c in range(3):
    for k in range(shots):
      _write(tmp_path / "support" / f"class_{c}" / f"{k}.png",
             255 - images[c, k, :, :, 0])
  files = []
  for j in range(queries):
    c = j % 3
    files.append((f"q{j}.png", c))
    _write(tmp_path / "query" / f"q{j}.png",
           255 - images[c, shots + j, :, :, 0])
  return tmp_path / "support", tmp_path / "query", files


def test_predictions_equal_the_method_on_the_same_arrays(tmp_path, model):
  path, task, method = model
  support, query, files = _folders(tmp_path, task)
  loaded, metadata = predict_lib.load_model(path)
  # The synthetic images are noise, not strokes: "auto" cannot tell their
  # polarity, so the files (the arrays' inverse) are inverted explicitly.
  preds, names = predict_lib.predict(loaded, metadata, support, query,
                                     invert="yes")
  assert names == ["class_0", "class_1", "class_2"]
  assert [pathlib.Path(p.file).name for p in preds] == [f for f, _ in files]
  images = synthetic_splits()["test"].images.astype(np.float32) / 255.0
  s_x = np.stack([images[c, k] for c in range(3) for k in range(2)])
  s_y = np.repeat(np.arange(3, dtype=np.int32), 2)
  order = [0, 2, 4, 1, 3, 5]  # the export's class-cycling order
  q_x = np.stack([images[c, 2 + j] for j, (_, c) in enumerate(files)])
  logits = method.run(s_x[order], s_y[order], q_x,
                      transductive=False).outputs.numpy()
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose([p.probabilities for p in preds], probs,
                             atol=1e-5)
  # One query alone: the same answer as within the folder.
  (tmp_path / "one").mkdir()
  (tmp_path / "one" / "q1.png").write_bytes((query / "q1.png").read_bytes())
  alone, _ = predict_lib.predict(loaded, metadata, support, tmp_path / "one",
                                 invert="yes")
  np.testing.assert_allclose(alone[0].probabilities, preds[1].probabilities,
                             atol=1e-5)


def test_main_predict_prints_and_writes_csv(tmp_path, model):
  path, task, _ = model
  support, query, files = _folders(tmp_path, task, shots=1, queries=3)
  out = subprocess.run(
      [sys.executable, "main.py", "--mode=predict", f"--saved_model={path}",
       f"--support_dir={support}", f"--query_dir={query}", "--invert=yes",
       f"--predictions={tmp_path / 'p.csv'}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 3
  with open(tmp_path / "p.csv") as f:
    rows = list(csv.DictReader(f))
  assert [pathlib.Path(r["file"]).name for r in rows] == [f for f, _ in files]
  for line, row in zip(lines, rows):
    file, label, prob = line.split("\t")
    assert (file, label) == (row["file"], row["predicted"])
    assert abs(float(prob) - float(row["probability"])) < 1e-4
    assert abs(sum(float(row[f"p_class_{c}"]) for c in range(3)) - 1) < 1e-4
  missing = subprocess.run(
      [sys.executable, "main.py", "--mode=predict",
       f"--saved_model={tmp_path / 'nothing'}", f"--support_dir={support}",
       f"--query_dir={query}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert missing.returncode == 1
  assert "saved_model.pb is missing" in missing.stderr


def test_bad_folders_get_clear_errors(tmp_path, model):
  path, task, _ = model
  support, query, _ = _folders(tmp_path, task)
  loaded, metadata = predict_lib.load_model(path)

  def error(s, q):
    with pytest.raises(predict_lib.PredictError) as e:
      predict_lib.predict(loaded, metadata, s, q)
    return str(e.value)

  (support / "class_3").mkdir()
  assert "4 classes" in error(support, query)
  (support / "class_0").rename(tmp_path / "class_0")
  assert "class_3 has no images" in error(support, query)
  _write(support / "class_3" / "a.png", np.zeros((16, 16), np.uint8))
  assert "same number of support images" in error(support, query)
  _write(support / "class_3" / "b.png", np.zeros((16, 16), np.uint8))
  (query / "bad.png").write_bytes(b"not an image")
  assert "Cannot read image" in error(support, query)
  empty = tmp_path / "empty"
  empty.mkdir()
  assert "holds no images" in error(support, empty)


def test_read_image_converts_by_the_convention(tmp_path):
  rng = np.random.default_rng(0)
  ink = (rng.random((40, 30)) > 0.8).astype(np.uint8) * 255  # light on dark
  paper = 255 - ink  # dark strokes on white, as Omniglot's files
  _write(tmp_path / "paper.png", paper)
  _write(tmp_path / "ink.png", ink)
  _write(tmp_path / "rgb.jpg", np.stack([paper] * 3, axis=-1))
  a = predict_lib.read_image(tmp_path / "paper.png", SMALL)
  assert a.shape == (16, 16, 1) and a.dtype == np.float32
  expected = np.asarray(Image.fromarray(ink).resize(
      (16, 16), Image.Resampling.LANCZOS), np.float32)[..., None] / 255.0
  np.testing.assert_allclose(a, expected, atol=1e-6)
  # Already light on dark: "auto" does not invert it a second time.
  np.testing.assert_allclose(predict_lib.read_image(tmp_path / "ink.png",
                                                    SMALL), expected,
                             atol=1e-6)
  np.testing.assert_allclose(
      predict_lib.read_image(tmp_path / "ink.png", SMALL, invert="yes"),
      np.asarray(Image.fromarray(paper).resize(
          (16, 16), Image.Resampling.LANCZOS), np.float32)[..., None] / 255.0,
      atol=1e-6)
  # RGB becomes grayscale (JPEG: lossy, so close, not equal).
  rgb = predict_lib.read_image(tmp_path / "rgb.jpg", SMALL)
  assert rgb.shape == (16, 16, 1) and np.abs(rgb - expected).mean() < 0.05
  colour = predict_lib.read_image(tmp_path / "paper.png",
                                  conventions.MINI_IMAGENET)
  assert colour.shape == (84, 84, 3)
  np.testing.assert_allclose(colour[..., 0], colour[..., 2])


def test_conventions_round_trip_through_metadata():
  for c in conventions.BY_DATASET.values():
    assert conventions.InputConvention.from_dict(c.as_dict()) == c


def _bad_inputs():
  """(name, support_images, support_labels, query_images, message) of each
  invalid call: the model is 3-way on 16x16x1 images."""
  good_x = np.full((6, 16, 16, 1), 0.5, np.float32)
  good_y = np.repeat(np.arange(3, dtype=np.int32), 2)
  nan_x = good_x.copy()
  nan_x[3, 7, 7, 0] = np.nan
  return [
      ("wrong size", good_x, good_y, np.zeros((4, 32, 32, 1), np.float32),
       "query_images must hold 16x16x1 images"),
      ("wrong channels", np.zeros((6, 16, 16, 3), np.float32), good_y,
       good_x, "support_images must hold 16x16x1 images"),
      ("a NaN pixel", nan_x, good_y, good_x,
       "support_images hold NaN or infinite values"),
      ("a label out of range", good_x, np.array([0, 0, 1, 1, 2, 3], np.int32),
       good_x, "this model classifies 3 classes"),
  ]


@pytest.mark.parametrize("signature", ["adapt_and_predict",
                                       "adapt_and_predict_transductive"])
def test_the_saved_model_checks_its_inputs_in_the_graph(model, signature):
  """Each invalid input is a clear InvalidArgumentError to the caller (the
  process goes on: the next valid call works)."""
  import tensorflow as tf
  path, _, _ = model
  loaded = tf.saved_model.load(str(path))
  fn = loaded.signatures[signature]
  for name, s_x, s_y, q_x, message in _bad_inputs():
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      fn(support_images=tf.constant(s_x), support_labels=tf.constant(s_y),
         query_images=tf.constant(q_x))
  # Another rank: refused by the signature (numpy arrays) or in the graph
  # (tensors), naming the input either way.
  _, s_x, s_y, _, _ = _bad_inputs()[0]
  for q_x in (np.zeros((4, 16, 16), np.float32),
              np.zeros((4, 16, 16, 1, 1), np.float32)):
    for convert in (np.asarray, tf.constant):
      with pytest.raises((TypeError, tf.errors.InvalidArgumentError),
                         match="query_images"):
        fn(support_images=convert(s_x), support_labels=convert(s_y),
           query_images=convert(q_x))
  for convert in (np.asarray, tf.constant):
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError),
                       match="support_labels"):
      fn(support_images=convert(s_x), support_labels=convert(s_y[:, None]),
         query_images=convert(s_x))
  q_x = s_x
  logits = fn(support_images=tf.constant(s_x), support_labels=tf.constant(s_y),
              query_images=tf.constant(q_x))["logits"]
  assert logits.shape == (6, 3) and np.isfinite(logits.numpy()).all()


def test_an_export_removes_what_a_killed_export_left(tmp_path, model):
  """`kill -9` during an export leaves a partial SavedModel directory; the
  next export beside it removes it (and keeps a live writer's)."""
  _, task, method = model
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True).stdout
  left = tmp_path / f"saved_model.partial-{int(dead)}-0123abcd"
  (left / "variables").mkdir(parents=True)
  (left / "saved_model.pb").write_bytes(b"partial")
  path = export.export_saved_model(tmp_path / "saved_model", method,
                                   task.learner.example_shape, metadata={})
  assert not left.exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]
  assert (path / "saved_model.pb").is_file()
