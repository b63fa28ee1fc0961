"""README.md against the code: every flag it names exists, every flag of
the command line is documented, and its commands parse."""

import re
import shlex

from absl import app
from absl import flags as absl_flags
from absl.testing import flagsaver
import pytest

from conftest import REPO
from metalstm import flags as metalstm_flags

FLAGS = metalstm_flags.FLAGS
app.define_help_flags()  # --help, --helpfull, as the command line has them
README = (REPO / "README.md").read_text()
_FLAG = re.compile(r"(?<![\w-])--(\[no\])?([a-z][a-z0-9_]*)")


def _commands():
  """Shell commands of the README's code blocks, continuation lines joined,
  comments cut."""
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", README, re.DOTALL):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split("  #")[0].strip()
      if line.startswith("#"):
        continue
      for part in line.split("&&"):
        if part.strip():
          commands.append(shlex.split(part.strip()))
  return commands


def _script_flags(path) -> set[str]:
  """Flags a script (a benchmark, `python -m data_prep`) defines, with the
  `no` form of its boolean ones."""
  text = path.read_text()
  names = set(re.findall(r'DEFINE_\w+\(\s*"(\w+)"', text))
  return names | {"no" + name for name in
                  re.findall(r'DEFINE_bool\(\s*"(\w+)"', text)}


def _project_flags() -> set[str]:
  names = set()
  for module in (metalstm_flags, metalstm_flags._predict_flags):
    names |= {f.name for f in FLAGS.get_flags_for_module(module.__name__)}
  return names


def _known(name: str, extra: set[str]) -> bool:
  if name in FLAGS or name in extra:
    return True
  return (name.startswith("no") and name[2:] in FLAGS and
          isinstance(FLAGS[name[2:]], absl_flags.BooleanFlag))


def test_every_flag_the_readme_names_exists():
  scripts = [*(REPO / "benchmarks").glob("*.py"),
             REPO / "data_prep" / "__main__.py"]
  benchmark = set().union(*(_script_flags(p) for p in scripts))
  unknown = sorted({name for _, name in _FLAG.findall(README)
                    if not _known(name, benchmark)})
  assert not unknown, f"README names flags that do not exist: {unknown}"


def test_every_command_line_flag_is_in_the_readme():
  named = {name for _, name in _FLAG.findall(README)}
  named |= {name[2:] for name in named if name.startswith("no")}
  missing = sorted(_project_flags() - named)
  assert not missing, f"flags missing from README.md: {missing}"


@pytest.mark.parametrize("command", [c for c in _commands() if c])
def test_the_readme_commands_parse(command):
  if command[:2] == ["python", "main.py"] or command[0] == "metalstm":
    args = command[2:] if command[0] == "python" else command[1:]
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(["main.py", *args])  # raises on an unknown flag or bad value
  elif command[0] == "python" and command[1].startswith("benchmarks/"):
    defined = _script_flags(REPO / command[1])
    for token in command[2:]:
      match = re.match(r"--(\w+)", token)
      assert match and match.group(1) in defined, (command[1], token)
  else:  # set-up and test commands
    assert command[0] in ("pip", "export") or command[:2] == [
        "python", "-m"], command


def _anchors(markdown: str) -> set[str]:
  """GitHub's anchors of a Markdown file's headings."""
  out = set()
  for title in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
    slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    out.add(slug)
  return out


def test_the_readmes_links_and_figures_exist():
  results = _anchors((REPO / "RESULTS.md").read_text())
  own = _anchors(README)
  for target, anchor in re.findall(r"\]\(([\w./]*)#([\w-]+)\)", README):
    assert anchor in (results if target == "RESULTS.md" else own), (
        target, anchor)
  for document in ("README.md", "RESULTS.md"):
    text = (REPO / document).read_text()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
      assert (REPO / image).is_file(), (document, image)
