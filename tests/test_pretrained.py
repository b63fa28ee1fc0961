"""The models in `pretrained/`: small, loadable by TensorFlow alone, and
reproducing the validation accuracy their model cards state, on the real
data."""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from data_prep import load_splits
from metalstm.results import parse_result_line
from metalstm_tf import saved_model_eval, tasks
from metalstm_tf.config import TrainConfig
from metalstm_tf.export import read_metadata

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = sorted(p.parent for p in (REPO / "pretrained").glob(
    "*/saved_model.pb"))
CARD_LINE = re.compile(r"RESULT .*split=val .*mean=([\d.]+) .*"
                       r"queries=(per_query|transductive) model=(\S+)")


def _card_results(model_dir):
  """queries -> validation mean the card states for its own shot count."""
  metadata = read_metadata(model_dir)
  out = {}
  for line in (model_dir / "MODEL_CARD.md").read_text().splitlines():
    m = CARD_LINE.search(line)
    if m and f" shots={metadata['shots']} " in line:
      out[m.group(2)] = float(m.group(1))
  return out


def test_there_are_pretrained_models_with_cards():
  assert MODELS, "pretrained/ holds no SavedModel"
  for model in MODELS:
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    assert size < 5 * 2**20, (model, size)
    assert set(_card_results(model)) == {"per_query", "transductive"}, model
    metadata = read_metadata(model)
    assert metadata["task"] == "classification" and metadata["ways"] >= 2


def _real_task(model, data_dir, cache_dir):
  """(training configuration, task on the real data) of a SavedModel."""
  config = TrainConfig.from_dict(read_metadata(model)["config"])
  return config, tasks.image_task(
      load_splits(config.dataset, data_dir, cache_dir), config)


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_pretrained_model_reproduces_its_card(tmp_path, model,
                                              real_data_dir,
                                              shared_cache_dir):
  config, task = _real_task(model, real_data_dir, shared_cache_dir)
  episodes = list(task.eval_dataset("val", config.val_episodes))
  np.savez(tmp_path / "val.npz", **{
      f"{f}{i}": (np.round(getattr(e, f).numpy() * 255).astype(np.uint8)
                  if f.endswith("images") else getattr(e, f).numpy())
      for i, e in enumerate(episodes) for f in e._fields})
  script = textwrap.dedent(f"""
      import json, sys, numpy as np, tensorflow as tf
      m = tf.saved_model.load({str(model)!r})
      d = np.load({str(tmp_path / 'val.npz')!r})
      out = {{}}
      for key, name in (("per_query", "adapt_and_predict"),
                        ("transductive", "adapt_and_predict_transductive")):
        f, acc = m.signatures[name], []
        for i in range({len(episodes)}):
          img = lambda k: tf.constant(d[k + str(i)].astype(np.float32) / 255)
          logits = f(support_images=img("support_images"),
                     support_labels=tf.constant(d[f"support_labels{{i}}"]),
                     query_images=img("query_images"))["logits"]
          acc.append(100 * np.mean(np.argmax(logits, -1) ==
                                   d[f"query_labels{{i}}"]))
        out[key] = float(np.mean(acc))
      assert not any(k.startswith(("metalstm_tf", "data_prep"))
                     for k in sys.modules)
      print(json.dumps(out))
  """)
  run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=""), timeout=1800)
  assert run.returncode == 0, run.stderr[-2000:]
  got = json.loads(run.stdout.splitlines()[-1])
  card = _card_results(model)
  for queries, stated in card.items():
    assert abs(got[queries] - stated) < 0.2, (queries, got, card)


def _predict_folders(tmp_path, model, truth):
  """(correct, file -> predicted class) of `main.py --mode=predict` with the
  defaults on tmp_path/support and tmp_path/query, whose files' classes are
  `truth`."""
  run = subprocess.run(
      [sys.executable, "main.py", "--mode=predict", f"--saved_model={model}",
       f"--support_dir={tmp_path / 'support'}",
       f"--query_dir={tmp_path / 'query'}",
       f"--predictions={tmp_path / 'p.csv'}"],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert run.returncode == 0, run.stderr[-2000:]
  predicted = {pathlib.Path(line.split("\t")[0]).name: line.split("\t")[1]
               for line in run.stdout.strip().splitlines()}
  assert set(predicted) == set(truth)
  return sum(predicted[f] == truth[f] for f in truth), predicted


def _each_model_of(dataset: str):
  """Parametrises a test over the pretrained models of `dataset`."""
  models = [m for m in MODELS if read_metadata(m)["dataset"] == dataset]
  return pytest.mark.parametrize("model", models,
                                 ids=[m.name for m in models])


@pytest.mark.real_data
@_each_model_of("omniglot")
def test_pretrained_model_classifies_a_users_omniglot_files(
    tmp_path, model, real_data_dir):
  """The path a user takes on a fresh install: the official files (105x105
  PNGs, black strokes on white) of five characters of a test alphabet copied
  into folders as they are, classified by `main.py --mode=predict` with the
  defaults (the model's own conversion: `--invert=auto`, resize)."""
  shots = read_metadata(model)["shots"]
  with zipfile.ZipFile(real_data_dir / "omniglot" /
                       "images_evaluation.zip") as archive:
    names = sorted(n for n in archive.namelist()
                   if n.startswith("images_evaluation/Angelic/character0")
                   and n.endswith(".png"))
    truth = {}
    for c in range(1, 6):
      files = [n for n in names if f"/character0{c}/" in n][:shots + 3]
      for k, name in enumerate(files):
        target = (tmp_path / "support" / f"char{c}" / f"{k}.png"
                  if k < shots else tmp_path / "query" / f"c{c}_{k}.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(name))
        if k >= shots:
          truth[target.name] = f"char{c}"
  correct, predicted = _predict_folders(tmp_path, model, truth)
  assert correct >= 12, (correct, predicted)  # of 15; chance is 3


@pytest.mark.real_data
def test_evaluate_mode_reads_the_training_classes(real_data_dir,
                                                  shared_cache_dir):
  """`--mode=evaluate --eval_split=train` measures the model on the fixed,
  unaugmented training-class episodes: the RESULT lines equal the
  SavedModel's accuracy on `eval_dataset('train', n)` computed here."""
  model = REPO / "pretrained" / "omniglot_5w1s"
  run = subprocess.run(
      [sys.executable, "main.py", "--mode=evaluate", f"--saved_model={model}",
       "--eval_split=train", "--val_episodes=4",
       f"--data_dir={real_data_dir}", f"--cache_dir={shared_cache_dir}"],
      capture_output=True, text=True, cwd=REPO, timeout=900)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = {f["queries"]: f for f in map(parse_result_line, [
      l for l in run.stdout.splitlines() if l.startswith("RESULT ")])}
  assert set(lines) == {"per_query", "transductive"}
  _, task = _real_task(model, real_data_dir, shared_cache_dir)
  loaded = tf.saved_model.load(str(model))
  for queries, fields in lines.items():
    assert (fields["split"], fields["episodes"]) == ("train", "4")
    expected = saved_model_eval.evaluate(
        loaded, task.eval_dataset("train", 4), queries)
    assert float(fields["mean"]) == pytest.approx(expected["mean"], abs=0.01)


@pytest.mark.real_data
@_each_model_of("mini_imagenet")
def test_pretrained_model_classifies_a_users_mini_imagenet_files(
    tmp_path, model, real_data_dir):
  """A user's JPEGs of five test classes (the first files of each class in
  the official test.csv, as they are in images.zip: 5 to learn from, 40 to
  classify), classified by `main.py --mode=predict` with the model's own
  conversion; a 1-shot model is given the 5 images too."""
  root = real_data_dir / "mini-imagenet"
  by_class = {}
  for line in (root / "test.csv").read_text().splitlines()[1:]:
    filename, label = line.strip().split(",")
    by_class.setdefault(label, []).append(filename)
  truth = {}
  with zipfile.ZipFile(root / "images.zip") as archive:
    for label in sorted(by_class)[:5]:
      for k, filename in enumerate(by_class[label][:45]):
        target = (tmp_path / "support" / label / filename if k < 5 else
                  tmp_path / "query" / filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(f"images/{filename}"))
        if k >= 5:
          truth[filename] = label
  correct, predicted = _predict_folders(tmp_path, model, truth)
  # Of 200: chance is 40, and 56 or more by chance has a probability of 0.4 %.
  assert correct >= 56, (correct, predicted)
