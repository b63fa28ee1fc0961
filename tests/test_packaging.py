"""The installed command line: the `metalstm` console command, what the
package puts into site-packages, and the console's filter of TensorFlow's
native start-up notices."""

import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO
from metalstm import console


def _help(command, cwd):
  out = subprocess.run(command + ["--help"], cwd=cwd, capture_output=True,
                       text=True, timeout=300)
  # (absl's --help exits with 1.)
  assert out.returncode == 1 and not out.stderr, out.stderr[-2000:]
  # The flags' section is headed by the program's path; the rest is equal.
  return re.sub(r"^\S*(main\.py|metalstm):$", "PROGRAM:", out.stdout,
                flags=re.MULTILINE)


def test_the_console_command_is_installed_and_is_main_py(tmp_path):
  command = shutil.which("metalstm")
  assert command, ("the `metalstm` console command is not on PATH: install "
                   "the project (pip install -e .)")
  installed = _help([command], cwd=tmp_path)  # outside the checkout
  assert installed == _help([sys.executable, "main.py"], cwd=REPO)
  assert "--dataset" in installed and "--method" in installed
  assert "PROGRAM:" in installed


def test_the_wheel_installs_no_generic_top_level_names(tmp_path):
  # Built from a copy: setuptools writes build/ and *.egg-info beside the
  # sources.
  source = tmp_path / "source"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache",
      "pretrained", "figures"))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                  "--no-build-isolation", "--quiet", "-w", str(tmp_path),
                  str(source)], check=True, timeout=600,
                 capture_output=True)
  (wheel,) = tmp_path.glob("metalstm-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  top = {n.split("/")[0] for n in names if ".dist-info" not in n}
  assert top == {"metalstm", "metalstm_tf", "data_prep"}, top
  for needed in ("metalstm/flags/__init__.py", "metalstm/flags/predict.py",
                 "metalstm/cli.py", "metalstm_tf/kernels/meta_lstm_cell.cc",
                 "metalstm_tf/kernels/conv_block.cc",
                 "data_prep/splits/vinyals/train.txt"):
    assert needed in names, needed
  entry_points = next(n for n in names if n.endswith("entry_points.txt"))
  text = zipfile.ZipFile(wheel).read(entry_points).decode()
  assert "metalstm = metalstm.cli:run" in text
  assert not any(pathlib.PurePath(n).name == "psutil" for n in names)


def test_native_notices_are_filtered_and_warnings_kept():
  captured = (
      "WARNING: All log messages before absl::InitializeLog() is called are "
      "written to STDERR\n"
      "I0000 00:00:1.2   31 port.cc:153] oneDNN custom operations are on.\n"
      "I0000 00:00:1.3   31 cpu_feature_guard.cc:227] This binary is "
      "optimized.\n"
      "To enable the following instructions: AVX2 FMA, in other operations.\n"
      "E0000 00:00:1.4   31 cuda_platform.cc:52] failed call to cuInit: "
      "INTERNAL\n"
      "W0000 00:00:1.5   31 loader.cc:10] a real warning\n"
      "E0000 00:00:1.6   31 op.cc:10] a real error\n"
      "  with a second line\n"
      "Traceback (most recent call last):\n")
  assert console.filter_native_notices(captured) == (
      "W0000 00:00:1.5   31 loader.cc:10] a real warning\n"
      "E0000 00:00:1.6   31 op.cc:10] a real error\n"
      "  with a second line\n"
      "Traceback (most recent call last):\n")
