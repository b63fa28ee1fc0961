"""The one exception type the data layer raises for problems a user can fix."""


class DatasetError(RuntimeError):
  """A dataset is missing, corrupt or cannot serve the requested episodes.

  The message is a single paragraph that says what is wrong and how to fix it.
  """
