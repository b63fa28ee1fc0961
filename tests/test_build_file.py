"""BUILD names every module and test that exists (Debian's Bazel cannot fetch
rules offline here, so this keeps the file honest instead)."""

import re

from conftest import REPO


def _build_text():
  return (REPO / "BUILD").read_text()


def test_build_names_every_library_module():
  text = _build_text()
  for pkg in ("metalstm", "metalstm_tf", "data_prep", "flags"):
    for path in sorted((REPO / pkg).rglob("*.py")):
      rel = path.relative_to(REPO).as_posix()
      assert f'"{rel}"' in text, f"BUILD does not list {rel}"


def test_build_has_a_target_for_every_test_and_the_binary():
  text = _build_text()
  for path in sorted((REPO / "tests").glob("test_*.py")):
    name = path.stem
    assert re.search(rf'py_test\(\s*name = "{name}"', text), name
    assert f'"tests/{path.name}"' in text
  assert re.search(r'py_binary\(\s*name = "main"', text)
  for path in sorted((REPO / "benchmarks").glob("*.py")):
    assert f'"benchmarks/{path.name}"' in text


def test_build_lists_no_missing_file():
  for rel in re.findall(r'"([\w/]+\.(?:py|txt))"', _build_text()):
    assert (REPO / rel).is_file(), f"BUILD lists {rel}, which does not exist"
