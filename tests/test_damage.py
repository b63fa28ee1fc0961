"""Damaged inputs and failing disks give a message that says what to do:
a damaged archive member, an unwritable cache, a cache damaged in place, a
disk that fills during a checkpoint."""

import json
import os
import resource
import signal
import subprocess
import zipfile

import numpy as np
import pytest

from conftest import REPO, write_mini_imagenet, write_omniglot_zips
from data_prep import DatasetError, cache, mini_imagenet, omniglot
from helpers import short_sine_command


def _flip_member_bytes(path, index: int) -> str:
  """Flips bytes in the middle of the stored data of member `index` (the
  zip's structure stays valid; the member's CRC no longer matches)."""
  with zipfile.ZipFile(path) as zf:
    info = zf.infolist()[index]
  data = bytearray(path.read_bytes())
  # Local header: 30 bytes + name + extra, then the member's data.
  start = info.header_offset + 30 + len(info.filename.encode()) + len(
      info.extra)
  middle = start + info.compress_size // 2
  for i in range(middle, middle + 4):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))
  return info.filename


def test_a_damaged_omniglot_member_names_the_archive_and_the_fix(tmp_path):
  write_omniglot_zips(tmp_path / "data", alphabets=1, characters=1)
  zpath = tmp_path / "data" / "omniglot" / "images_background.zip"
  member = _flip_member_bytes(zpath, 5)
  with pytest.raises(DatasetError) as raised:
    omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  message = str(raised.value)
  assert f"{zpath} is damaged" in message and member in message
  assert "download it afresh" in message
  assert not (tmp_path / "c" / f"{omniglot.CACHE_NAME}.json").exists()
  assert not [p for p in (tmp_path / "c").iterdir() if ".partial-" in p.name]


def test_a_damaged_mini_imagenet_member_names_the_archive(tmp_path):
  write_mini_imagenet(tmp_path / "data", as_zip=True)
  zpath = tmp_path / "data" / "mini-imagenet" / "images.zip"
  member = _flip_member_bytes(zpath, 2)
  with pytest.raises(DatasetError) as raised:
    for split in ("train", "val", "test"):
      mini_imagenet.load_split(split, tmp_path / "data", tmp_path / "c")
  assert f"{zpath} is damaged" in str(raised.value)
  assert member in str(raised.value)


def test_a_cache_directory_that_cannot_be_created_says_so(tmp_path):
  write_omniglot_zips(tmp_path / "data", alphabets=1, characters=1)
  blocker = tmp_path / "not_a_directory"
  blocker.write_text("")
  with pytest.raises(DatasetError, match="cache"):
    omniglot.load_characters(tmp_path / "data", blocker / "cache")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_cache_directory_says_so(tmp_path):
  write_omniglot_zips(tmp_path / "data", alphabets=1, characters=1)
  (tmp_path / "c").mkdir()
  os.chmod(tmp_path / "c", 0o555)
  try:
    with pytest.raises(DatasetError, match="Cannot write the cache"):
      omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  finally:
    os.chmod(tmp_path / "c", 0o755)


def test_a_read_only_cache_file_is_an_error_with_the_fix(tmp_path,
                                                         monkeypatch):
  """The write failing (as it does for a read-only directory when not
  root) is a DatasetError naming the cache and the flag."""
  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(np.lib.format, "open_memmap", refuse)
  with pytest.raises(DatasetError) as raised:
    cache.build(tmp_path, "arr", [["f", 1, 1]], (4,), np.uint8, lambda a: {})
  assert "Permission denied" in str(raised.value)
  assert "--cache_dir" in str(raised.value)


def test_a_cache_overwritten_in_place_is_detected_and_rebuilt(tmp_path):
  write_omniglot_zips(tmp_path / "data", alphabets=1, characters=2)
  first, _ = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  npy = tmp_path / "c" / f"{omniglot.CACHE_NAME}.npy"
  size = npy.stat().st_size
  with open(npy, "r+b") as f:  # zeros over the data, the header kept
    f.seek(size // 2)
    f.write(b"\0" * (size - size // 2))
  assert npy.stat().st_size == size
  assert cache.load(tmp_path / "c", omniglot.CACHE_NAME, json.loads(
      (tmp_path / "c" / f"{omniglot.CACHE_NAME}.json").read_text())[
          "fingerprint"]) is None
  again, _ = omniglot.load_characters(tmp_path / "data", tmp_path / "c")
  np.testing.assert_array_equal(again, first)


def _fill_the_disk_at(limit: int):
  """In the child: files may not grow past `limit` bytes (as on a full
  disk, writes fail with EFBIG instead of killing the process)."""
  def apply():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
  return apply


@pytest.mark.slow
def test_a_disk_that_fills_during_a_checkpoint_gives_a_message(tmp_path):
  run = tmp_path / "run"
  command = short_sine_command(run, episodes=20, fused_kernel=False)
  out = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                       timeout=300, preexec_fn=_fill_the_disk_at(8_000))
  assert out.returncode == 1, out.stderr[-3000:]
  error = [line for line in out.stderr.splitlines()
           if line.startswith("error: ")]
  assert error and "Could not write checkpoint" in error[0], out.stderr[-3000:]
  assert "Free some disk space" in error[0]
  assert "Traceback" not in out.stderr
  # With room again, the same command trains the run to its end.
  again = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "RESULT dataset=sine" in again.stdout
