"""The trainer's checkpoints: `Checkpoints` is the one reader (`jax_resnet.checkpoint_reader`:
the restore rule, the CRC-32s, corrupt steps set aside) plus saving.

Saves are asynchronous and finished before exit; `max_to_keep` removes old steps only after a
newer one is complete, and the trainer saves only states it checked finite, so the newest
checkpoint is always a finite one. Each save's metadata gains the CRC-32 of every array of the
state (`checkpoint_reader.checksums`), which a restore compares, and the format version they are
written in (`checkpoint_reader.FORMAT_VERSION`). A storage error behind a failed
save is one line (`CheckpointWriteError`).
"""

import contextlib
import errno
import os
import re
import shutil

import jax
import orbax.checkpoint as ocp

from jax_resnet.checkpoint_reader import (  # noqa: F401 (the reader's names, public here too)
    CORRUPT, FATAL, FORMAT_VERSION, OK, CheckpointError, CheckpointMismatchError, CheckpointReader,
    CheckpointReadError, agree, causes, checksums, flat_arrays, read_verified, reason_of,
    trainer_layout)
from jax_resnet.errors import TrainingError

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO}


class CheckpointWriteError(CheckpointError, TrainingError):
  """A save failed (full disk, quota, read-only storage)."""


# tensorstore raises ValueError('RESOURCE_EXHAUSTED: ... [os_error_code=28] ...'): Python gets
# no errno attribute, only the status with its os_error_code payload written out.
_OS_ERROR_PAYLOAD = re.compile(r"\[os_error_code='?(\d+)'?\]")


def _errno_of(error):
  """The operating system's error number behind an exception: OSError's, or the payload of a
  tensorstore status; None if it carries none."""
  if isinstance(error, OSError):
    return error.errno
  found = _OS_ERROR_PAYLOAD.search(str(error))
  return int(found[1]) if found else None


def _write_failure(error):
  """The storage error behind a failed save, as an OSError, if it is one of the storage's."""
  for cause in causes(error):
    number = _errno_of(cause)
    if number in _WRITE_ERRNOS:
      return cause if isinstance(cause, OSError) else OSError(number, os.strerror(number))
  return None


def _check_room(directory: str, state):
  """A save that cannot fit fails before Orbax starts writing: once its writers meet a full
  disk, tensorstore's callbacks print pages of tracebacks of their own from other threads."""
  needed = sum(getattr(leaf, 'nbytes', 0) for leaf in jax.tree.leaves(state)) + 2 ** 16
  if needed > shutil.disk_usage(directory).free:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Checkpoints(CheckpointReader):
  """A run's checkpoints/ directory: restores by the reader's rule (`restore`), saves
  asynchronously (`save`, `wait`). `read_only=True` is the reader alone."""

  def __init__(self, directory: str, keep: int, read_only: bool = False):
    super().__init__(directory, keep, read_only)
    self.writing = None      # the step of the save in flight
    self.write_failed = False

  def save(self, step: int, state, data_state, meta) -> bool:
    """Saves asynchronously (the trainer decides when); meta gains the state's checksums."""
    meta = dict(meta, format=FORMAT_VERSION, checksums=checksums(state))
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave(meta))
    self.writing = step
    with self._writing():
      _check_room(self.directory, state)
      saved = self.manager.save(step, args=args, force=True)
    return saved

  def wait(self):
    if self.write_failed:  # reported once already; the exception is on its way up
      return
    with self._writing():
      self.manager.wait_until_finished()

  @contextlib.contextmanager
  def _writing(self):
    """A save's storage error as one line (the previous checkpoint is never touched)."""
    try:
      yield
    except Exception as error:
      failure = _write_failure(error)
      if failure is None:
        raise
      self.write_failed = True
      kept = [s for s in self.manager.all_steps() if s != self.writing]
      try:  # end Orbax's background work now, not in interpreter shutdown (which prints it)
        self.manager.close()
      except Exception:  # the same failure again: reported below
        pass
      previous = f'step {max(kept)} is intact there' if kept else 'no earlier checkpoint exists'
      raise CheckpointWriteError(
          f'Writing a checkpoint to {self.directory} failed ({reason_of(failure)}); {previous}. '
          'Free space or fix the storage, then rerun the same command to resume.') from None
