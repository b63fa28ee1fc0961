"""Atomic, fingerprinted array caches.

A cache entry is `<name>.npy` plus `<name>.json`. The JSON holds the source
fingerprint and the array's shape, dtype and byte size; it is written last, so
an interrupted build leaves no entry that loads as valid. Entries are rebuilt
when the fingerprint of their source files changes.
"""

import json
import pathlib
from typing import Callable, Iterable

import numpy as np
from absl import logging

from data_prep.atomic import atomic_path, atomic_write_text, remove_leftovers


def fingerprint(paths: Iterable[pathlib.Path]) -> list[list]:
  """Name, size and modification time of each source file."""
  out = []
  for p in sorted(pathlib.Path(x) for x in paths):
    st = p.stat()
    out.append([p.name, st.st_size, int(st.st_mtime)])
  return out


def load(cache_dir: pathlib.Path, name: str, source_fingerprint,
         mmap: bool = False) -> tuple[np.ndarray, dict] | None:
  """Returns (array, extra metadata), or None if absent, stale or damaged."""
  npy, meta_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
  if not (npy.is_file() and meta_path.is_file()):
    return None
  try:
    meta = json.loads(meta_path.read_text())
  except (OSError, ValueError):
    return None
  if meta.get("fingerprint") != source_fingerprint:
    logging.info("Cache %s is stale (source files changed); rebuilding.", npy)
    return None
  if npy.stat().st_size != meta.get("nbytes_file"):
    logging.warning("Cache %s is damaged (size mismatch); rebuilding.", npy)
    return None
  try:
    array = np.load(npy, mmap_mode="r" if mmap else None)
  except (OSError, ValueError):
    return None
  if list(array.shape) != meta.get("shape") or str(array.dtype) != meta.get(
      "dtype"):
    return None
  return array, meta.get("extra", {})


def build(cache_dir: pathlib.Path, name: str, source_fingerprint,
          shape: tuple[int, ...], dtype, fill: Callable[[np.ndarray], dict],
          mmap: bool = False) -> tuple[np.ndarray, dict]:
  """Creates a cache entry: `fill(array)` writes the data, returns metadata.

  The array is written into a temporary memory-mapped file so that large
  datasets are never held twice in memory; it is renamed into place only once
  complete, and the metadata file follows it.
  """
  cache_dir.mkdir(parents=True, exist_ok=True)
  npy, meta_path = cache_dir / f"{name}.npy", cache_dir / f"{name}.json"
  if meta_path.exists():
    meta_path.unlink()  # Invalidate first: a crash below leaves no valid entry.
  remove_leftovers(cache_dir)
  with atomic_path(npy, suffix=".npy") as tmp:
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    extra = fill(array) or {}
    array.flush()
    del array
  meta = {"fingerprint": source_fingerprint, "shape": list(shape),
          "dtype": str(np.dtype(dtype)), "nbytes_file": npy.stat().st_size,
          "extra": extra}
  atomic_write_text(meta_path, json.dumps(meta))
  logging.info("Wrote cache %s (%.1f MB).", npy, npy.stat().st_size / 1e6)
  result = load(cache_dir, name, source_fingerprint, mmap=mmap)
  assert result is not None
  return result


def load_or_build(cache_dir, name, source_fingerprint, shape, dtype, fill,
                  mmap=False):
  cached = load(cache_dir, name, source_fingerprint, mmap=mmap)
  if cached is not None:
    return cached
  return build(cache_dir, name, source_fingerprint, shape, dtype, fill, mmap)
