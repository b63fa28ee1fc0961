"""Classify a user's images with an exported meta-learner.

    support_dir/<class name>/<images>   a few labelled images per class
    query_dir/<images>                  the images to classify

Images (PNG, JPEG, BMP, GIF) are converted by the input convention stored in
the SavedModel's metadata (the one its training data was converted by:
channels, size, filter, polarity), the model adapts to the support set and
predicts every query on its own (`adapt_and_predict`), or the queries
together (`adapt_and_predict_transductive`) if asked. Only TensorFlow, numpy
and Pillow are needed, and the SavedModel.
"""

import csv
import io
import pathlib
from typing import NamedTuple

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from data_prep.conventions import InputConvention, convert
from metalstm_tf.export import METADATA_FILE, read_metadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
QUERY_CHUNK = 256  # queries per call (per-query predictions do not depend on it)


class PredictError(ValueError):
  """Bad input to prediction; the message says what and how to fix it."""


class Prediction(NamedTuple):
  file: str
  label: str
  probability: float
  probabilities: list


def load_model(path):
  """(loaded SavedModel, metadata dict) of an exported model directory."""
  import tensorflow as tf
  path = pathlib.Path(path)
  if not (path / "saved_model.pb").is_file():
    raise PredictError(
        f"No SavedModel in {path}: saved_model.pb is missing. Give "
        "--saved_model=DIR of an exported model (e.g. pretrained/omniglot_5w1s"
        ") or --logdir of a trained run (its saved_model/ is used).")
  if not (path / METADATA_FILE).is_file():
    raise PredictError(
        f"{path} has no {METADATA_FILE}: it was exported by an older version "
        "of this project. Export it again: python main.py --mode=export "
        "--logdir=RUN.")
  metadata = read_metadata(path)
  if metadata.get("task") != "classification":
    raise PredictError(f"{path} is a {metadata.get('task')} model; "
                       "prediction from image folders needs a classifier.")
  return tf.saved_model.load(str(path)), metadata


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in directory.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: pathlib.Path, convention: InputConvention,
               invert: str = "auto") -> np.ndarray:
  """One image file -> `[H, W, C]` float32 in [0, 1] by `convention`.

  Args:
    invert: "auto": the convention's inversion (e.g. Omniglot's dark strokes
      on light paper -> light on black), skipped for an image that is already
      mostly dark; "yes" / "no": always / never invert.
  """
  try:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
      im.load()
      image = im
  except (UnidentifiedImageError, OSError) as e:
    raise PredictError(f"Cannot read image {path} ({e}). Give PNG or JPEG "
                       "files, or remove it.") from e
  flip = {"yes": True, "no": False}.get(invert)
  if invert == "auto":
    flip = convention.invert and (
        np.asarray(image.convert("L"), dtype=np.float32).mean() >= 128.0)
  elif flip is None:
    raise PredictError(f"invert must be auto, yes or no, not {invert!r}.")
  return convert(image, convention, invert=flip).astype(np.float32) / 255.0


def read_support(support_dir, convention: InputConvention, ways: int,
                 invert: str = "auto"):
  """(images `[S, H, W, C]`, labels `[S]`, class names) of a support folder
  with one sub-directory per class, classes in name order."""
  root = pathlib.Path(support_dir)
  if not root.is_dir():
    raise PredictError(f"--support_dir {root} is not a directory. It must "
                       "hold one sub-directory of images per class.")
  classes = sorted(p for p in root.iterdir() if p.is_dir())
  if not classes:
    raise PredictError(f"--support_dir {root} has no class sub-directories; "
                       "put each class's images in a folder named after it.")
  if len(classes) != ways:
    raise PredictError(
        f"--support_dir {root} has {len(classes)} classes "
        f"({', '.join(c.name for c in classes)}) but the model classifies "
        f"exactly {ways}: give {ways} class folders.")
  files = [_image_files(c) for c in classes]
  for c, f in zip(classes, files):
    if not f:
      raise PredictError(f"Class folder {c} has no images "
                         f"({', '.join(IMAGE_SUFFIXES)}).")
  counts = {c.name: len(f) for c, f in zip(classes, files)}
  if len(set(counts.values())) > 1:
    raise PredictError(
        "Every class needs the same number of support images; the folders "
        f"hold {counts}. Use the same number in each (any number >= 1).")
  images = [read_image(p, convention, invert) for f in files for p in f]
  labels = [i for i, f in enumerate(files) for _ in f]
  return (np.stack(images), np.asarray(labels, np.int32),
          [c.name for c in classes])


def read_queries(query_dir, convention: InputConvention, invert="auto"):
  """(images `[Q, H, W, C]`, files) of the images in `query_dir`."""
  root = pathlib.Path(query_dir)
  if not root.is_dir():
    raise PredictError(f"--query_dir {root} is not a directory.")
  files = _image_files(root)
  if not files:
    raise PredictError(f"--query_dir {root} holds no images "
                       f"({', '.join(IMAGE_SUFFIXES)}).")
  return np.stack([read_image(p, convention, invert) for p in files]), files


def predict(model, metadata: dict, support_dir, query_dir,
            transductive: bool = False, invert: str = "auto"
            ) -> tuple[list[Prediction], list[str]]:
  """Adapts `model` to the support folder and classifies the query images:
  (one prediction per query file, in name order; the class names)."""
  import tensorflow as tf
  convention = InputConvention.from_dict(metadata["input_convention"])
  s_x, s_y, names = read_support(support_dir, convention, metadata["ways"],
                                 invert)
  q_x, files = read_queries(query_dir, convention, invert)
  logging.info("Adapting to %d support images of %d classes (%s); "
               "classifying %d queries %s.", len(s_y), len(names),
               ", ".join(names), len(files),
               "together (transductive)" if transductive else "one by one")
  fn = model.signatures["adapt_and_predict_transductive" if transductive
                         else "adapt_and_predict"]
  chunk = len(files) if transductive else QUERY_CHUNK
  probs = []
  for start in range(0, len(files), chunk):
    logits = fn(support_images=tf.constant(s_x),
                support_labels=tf.constant(s_y),
                query_images=tf.constant(q_x[start:start + chunk]))["logits"]
    probs.append(tf.nn.softmax(logits).numpy())
  probs = np.concatenate(probs)
  return [Prediction(str(f), names[int(p.argmax())], float(p.max()),
                     [float(v) for v in p])
          for f, p in zip(files, probs)], names


def write_csv(path, predictions: list[Prediction], class_names: list[str]):
  """file, predicted class, probability, then one column per class."""
  from data_prep.atomic import atomic_write_text
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(["file", "predicted", "probability"] +
                  [f"p_{n}" for n in class_names])
  for p in predictions:
    writer.writerow([p.file, p.label, f"{p.probability:.6f}"] +
                    [f"{v:.6f}" for v in p.probabilities])
  atomic_write_text(pathlib.Path(path), out.getvalue())
