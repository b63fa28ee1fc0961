"""What a person sees on the console: the progress bar, this project's log
lines, and none of TensorFlow's start-up and INFO chatter (unless asked)."""

import contextlib
import logging as std_logging
import math
import os
import pathlib
import re
import sys
import tempfile
import time

from absl import logging


class ProgressBar:
  """A one-line progress bar on stderr: episode of total, episodes/s, ETA,
  running loss and metric.

  (Not `keras.utils.Progbar`: its rate and ETA count from episode 0, so a
  resumed run at episode 6,000 would show a rate thousands of times too
  high.) On a terminal it redraws in place twice a second; in a log file
  it writes a line every 30 s.
  """

  def __init__(self, metric: str, scale: float, width: int = 30):
    self.metric, self.scale, self.width = metric, scale, width
    self.last = 0.0
    self.tty = sys.stderr.isatty()

  def __call__(self, episode: int, total: int, stats: dict) -> None:
    now = time.time()
    finished = stats["done"] >= stats["todo"]
    if now - self.last < (0.5 if self.tty else 30.0) and not finished:
      return
    self.last = now
    rate = stats["done"] / max(stats["seconds"], 1e-9)
    eta = (total - episode) / max(rate, 1e-9)
    filled = int(self.width * episode / total)
    bar = "=" * filled + "." * (self.width - filled)
    line = (f"[{bar}] {episode}/{total} {rate:.2f} ep/s ETA "
            f"{duration(eta)} loss "
            f"{stats.get('loss', math.nan):.4f} {self.metric} "
            f"{stats.get('metric', math.nan) * self.scale:.3f}")
    sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
    if finished and self.tty:
      sys.stderr.write("\n")
    sys.stderr.flush()


def duration(seconds: float) -> str:
  """`H:MM:SS`, with a day count past 24 hours (`2d 03:04:05`)."""
  seconds = int(min(seconds, 99 * 86400))
  days, rest = divmod(seconds, 86400)
  text = time.strftime("%H:%M:%S", time.gmtime(rest))
  return f"{days}d {text}" if days else text


def _project_dirs() -> tuple[str, ...]:
  """The directories of this project's code (a checkout's or the
  installed packages')."""
  import data_prep
  import metalstm
  import metalstm_tf
  return tuple(str(pathlib.Path(m.__file__).resolve().parent) + os.sep
               for m in (metalstm, metalstm_tf, data_prep))


def quiet_other_libraries() -> None:
  """Below WARNING, only this project's own log lines reach the console
  (TensorFlow's INFO chatter, e.g. on every checkpoint, stays out); with
  --verbosity given, everything at that level does."""
  ours = _project_dirs()

  def keep(record):
    return (record.levelno >= std_logging.WARNING or
            os.path.realpath(record.pathname).startswith(ours))
  logging.get_absl_handler().addFilter(keep)
  # TensorFlow's Python logger also prints through a handler of its own.
  std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)


# A native (C++) log record: severity letter, date, time, thread, file:line.
_NATIVE = re.compile(r"^([IWEF])\d{4} ")
_BANNER = "WARNING: All log messages before absl::InitializeLog()"
# Errors that only say that this machine has no GPU.
_NO_GPU = ("failed call to cuInit", "Could not find cuda drivers")


def _wanted(record: str) -> bool:
  if record.startswith(_BANNER):
    return False
  match = _NATIVE.match(record)
  if match is None:
    return True
  if match.group(1) == "I":
    return False
  return not any(s in record for s in _NO_GPU)


def filter_native_notices(text: str) -> str:
  """`text` (captured native stderr) without its INFO records, the absl
  banner and the no-GPU errors; a record's continuation lines go with it."""
  records, out = [], []
  for line in text.splitlines(keepends=True):
    if records and not (_NATIVE.match(line) or line.startswith(_BANNER)):
      records[-1] += line  # a continuation of the record before
    else:
      records.append(line)
  for record in records:
    if _wanted(record):
      out.append(record)
  return "".join(out)


@contextlib.contextmanager
def native_startup_notices(shown: bool):
  """Runs the block (TensorFlow's import and device set-up) with the
  process's file descriptor 2 captured, then writes back what
  `filter_native_notices` keeps, unless `shown`. TensorFlow's C++ library
  writes these notices before its logging is configured, so neither
  `TF_CPP_MIN_LOG_LEVEL` nor Python's logging reaches them."""
  if shown:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      sys.stderr.write(filter_native_notices(
          captured.read().decode("utf-8", "replace")))
      sys.stderr.flush()
