"""Log lines of our dependencies that read like corruption on a healthy run, dropped.

Each is identified by the module that logs it and its format string (the record's `msg`, not
the rendered text), so nothing else from those libraries is hidden:
- Orbax's "Metadata file does not exist" when it looks for an optional metadata file while
  listing or restoring checkpoints this package wrote;
- Orbax's "Given directory is read only" and "read_only=True, setting save_interval_steps=0"
  (or max_to_keep=None), said whenever the read-only tools (analysis, weights.load of a workdir)
  open a checkpoint directory as asked;
- TFDS's "Variant folder ... has no dataset_info.json" while it searches a data_dir for an
  unprepared dataset, just before our own error saying how to prepare it.
"""

import logging

FALSE_ALARMS = frozenset({
    ('checkpoint', 'Metadata file does not exist: %s'),
    ('serialization', 'Metadata file does not exist: %s'),
    ('checkpoint_manager', 'Given directory is read only=%s'),
    ('checkpoint_manager',
     'CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.'),
    ('checkpoint_manager', 'CheckpointManagerOptions.read_only=True, setting max_to_keep=None.'),
    ('file_utils', 'Variant folder %s has no %s'),
})


class FalseAlarmFilter(logging.Filter):
  """Drops the records in FALSE_ALARMS (absl logs them through the 'absl' logger)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.module, record.msg) not in FALSE_ALARMS


def install():
  """Adds the filter to absl's logger once."""
  logger = logging.getLogger('absl')
  if not any(isinstance(f, FalseAlarmFilter) for f in logger.filters):
    logger.addFilter(FalseAlarmFilter())
