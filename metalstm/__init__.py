"""metalstm's command line (`metalstm`, or `python main.py` in a checkout).

The library is `metalstm_tf` (models, training) and `data_prep` (datasets);
this package holds what reads the command line: `metalstm.cli` and the flag
definitions `metalstm.flags`. In the repository the flags live in the
top-level `flags/` directory (the project's layout); an installed package
holds them as `metalstm/flags`, and in a checkout this package's search path
reaches them where they are.
"""

import pathlib

_CHECKOUT = pathlib.Path(__file__).resolve().parent.parent
if (not (pathlib.Path(__file__).resolve().parent / "flags").is_dir() and
    (_CHECKOUT / "flags" / "__init__.py").is_file() and
    (_CHECKOUT / "main.py").is_file()):
  __path__.append(str(_CHECKOUT))  # noqa: F821  (the package's own path)
