"""User-facing errors: the CLI prints `str(error)` as one line and exits non-zero, no trace.

Each message says what is wrong, why, and what to do.
"""


class UserError(Exception):
  """Bad input from the user (config, data, workdir, files)."""


class ConfigError(UserError, ValueError):
  """A config key or value that cannot be used."""


class BadLabelError(UserError, ValueError):
  """An example's label is not a class index of the model."""


class DataNotFoundError(UserError, FileNotFoundError):
  """A dataset that is not prepared locally; the message names the command that prepares it."""
