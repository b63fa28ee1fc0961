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

import numpy as np
import pytest

from data_prep import load_splits
from metalstm_tf import tasks
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


@pytest.mark.real_data
@pytest.mark.parametrize("model", MODELS, ids=[m.name for m in MODELS])
def test_pretrained_model_reproduces_its_card(tmp_path, model,
                                              real_data_dir,
                                              shared_cache_dir):
  metadata = read_metadata(model)
  config = TrainConfig.from_dict(metadata["config"])
  task = tasks.image_task(load_splits(config.dataset, real_data_dir,
                                      shared_cache_dir), config)
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
