"""The one exception type the data layer raises for problems a user can fix."""

import tarfile
import zipfile
import zlib


class DatasetError(RuntimeError):
  """A dataset is missing, corrupt or cannot serve the requested episodes.

  The message is a single paragraph that says what is wrong and how to fix it.
  """


# What reading a damaged archive member raises: a bad CRC (zipfile), a
# corrupt deflate stream (zlib), a truncated file (EOFError, OSError), a
# damaged tar header (tarfile).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError,
                   tarfile.TarError)


def read_member(read, archive, member: str, fix: str) -> bytes:
  """`read()` (the bytes of `member` of `archive`), or a DatasetError that
  names the damaged archive and says `fix` when it cannot be read."""
  try:
    return read()
  except _ARCHIVE_ERRORS as e:
    raise DatasetError(
        f"{archive} is damaged: its member {member} cannot be read ({e}). "
        f"{fix}") from e
