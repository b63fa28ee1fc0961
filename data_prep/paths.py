"""Where datasets and caches live, and how missing files are fetched.

Resolution order, the same for both directories:
  explicit argument (from a flag)  >  environment variable  >  per-user cache.
"""

import os
import pathlib
import shutil
import urllib.error
import urllib.request

from absl import logging

from data_prep.atomic import atomic_path
from data_prep.errors import DatasetError

DATA_DIR_ENV = "METALSTM_DATA_DIR"
CACHE_DIR_ENV = "METALSTM_CACHE_DIR"


def _user_cache_root() -> pathlib.Path:
  xdg = os.environ.get("XDG_CACHE_HOME")
  base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
  return base / "metalstm"


def resolve_data_dir(data_dir: str | None = None) -> pathlib.Path:
  """The directory holding `omniglot/` and `mini-imagenet/` source files."""
  if data_dir:
    return pathlib.Path(data_dir).expanduser()
  if os.environ.get(DATA_DIR_ENV):
    return pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser()
  return _user_cache_root() / "data"


def resolve_cache_dir(cache_dir: str | None = None) -> pathlib.Path:
  """The directory holding derived arrays; never next to the source files."""
  if cache_dir:
    path = pathlib.Path(cache_dir).expanduser()
  elif os.environ.get(CACHE_DIR_ENV):
    path = pathlib.Path(os.environ[CACHE_DIR_ENV]).expanduser()
  else:
    path = _user_cache_root() / "cache"
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise DatasetError(
        f"Cannot create the cache directory {path} ({e}). Pass a writable "
        f"directory with --cache_dir or the {CACHE_DIR_ENV} environment "
        "variable.") from e
  return path


def download(url: str, dest: pathlib.Path, timeout: float = 30.0) -> None:
  """Downloads `url` to `dest` atomically (temporary file, then rename)."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  logging.info("Downloading %s -> %s", url, dest)
  with atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as out, \
      urllib.request.urlopen(url, timeout=timeout) as response:
    shutil.copyfileobj(response, out, length=1 << 20)


def ensure_files(directory: pathlib.Path, files: dict[str, str],
                 dataset: str) -> None:
  """Makes sure every `files` name exists in `directory`, downloading if not.

  Args:
    directory: where the files must be.
    files: file name -> official download URL.
    dataset: name used in error messages.

  Raises:
    DatasetError: a file is missing and could not be downloaded.
  """
  missing = {n: u for n, u in files.items() if not (directory / n).is_file()}
  if not missing:
    return
  failures = []
  for name, url in missing.items():
    try:
      download(url, directory / name)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
      failures.append(f"{name} from {url} ({e})")
  if failures:
    raise DatasetError(
        f"The {dataset} files are missing from {directory} and could not be "
        f"downloaded: {'; '.join(failures)}. Download them by hand into "
        f"{directory}, or point --data_dir (or the {DATA_DIR_ENV} environment "
        f"variable) at a directory that holds {dataset_subdir_hint(dataset)}.")


def dataset_subdir_hint(dataset: str) -> str:
  return {"omniglot": "omniglot/images_background.zip and "
                      "omniglot/images_evaluation.zip"}.get(dataset, dataset)
