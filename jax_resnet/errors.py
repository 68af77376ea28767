"""User-facing errors: the CLI prints `str(error)` as one line and exits 2, no trace.

Each message says what is wrong, why, and what to do. Each layer raises one type, a `UserError`
(docs/architecture.md, "Layers"): `ModelError` (the model library; `OptionError` for a value
outside a fixed set), `ConfigError` (config/), `DataError` (data/), `TrainingError`
(training/), `checkpoint_reader.CheckpointError` and `weights.WeightsError`; so a program
catches `UserError` alone.
"""


class UserError(Exception):
  """Bad input from the user (config, data, workdir, files).

  `choices`: when the input is a value outside a fixed set, the valid ones, so a caller that
  knows the value under another name (the config boundary's key) can word the line itself."""

  def __init__(self, *args, choices=()):
    super().__init__(*args)
    self.choices = tuple(choices)


def not_one_of(what: str, value, choices) -> str:
  """The words for a value outside a fixed set: '<what> must be one of ..., got <value>.'"""
  return f'{what} must be one of {", ".join(map(repr, choices))}, got {value!r}.'


def check_choice(error_type, what: str, value, choices):
  """Raises `error_type` naming `what`, the value and `choices` unless value is one of them."""
  if value not in choices:
    raise error_type(not_one_of(what, value, choices), choices=choices)


class ModelError(UserError, ValueError):
  """A model the library cannot build as asked (layers, blocks, stems, models, video,
  registry): an unknown name, an option it cannot honour, an input it cannot take; still a
  ValueError, the library's contract."""


class OptionError(ModelError):
  """A model option's value outside its fixed set (`choices`: the valid ones), checked by the
  one function that owns the option (`layers.check_shortcut`, `models.check_norm`, ...)."""


class ConfigError(UserError, ValueError):
  """A config key or value that cannot be used (config/ only)."""


class DataError(UserError, ValueError):
  """Input-pipeline settings or a dataset that cannot be used (data/)."""


class BadLabelError(DataError):
  """An example's label is not a class index of the model."""


class DataNotFoundError(DataError, FileNotFoundError):
  """A dataset that is not prepared locally; the message names the command that prepares it."""


class TrainingError(UserError, ValueError):
  """A run that cannot start or go on: settings the trainer cannot use, its workdir, a
  diverged or interrupted run (training/)."""
