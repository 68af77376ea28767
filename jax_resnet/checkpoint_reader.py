"""The one reader of a trainer workdir's checkpoints (Orbax): the restore rule that both the
trainer (`training.checkpoints.Checkpoints`, which adds saving) and the readers without a train
state template (`read_verified`: weights.load, predict, init_from) follow.

Each checkpoint's metadata carries its format version (`FORMAT_VERSION`: what its metadata
means) and a CRC-32 of every array of the state (`checksums`, computed when it was saved); a
restore compares them with the arrays read. A step of another format version is named "written
by another version" and nothing is moved (its checksums may be in another form); a step without
checksums (written before they existed) restores with a warning that it is unverified. Restore
tells three failures apart, and every process must agree before any acts:
- corruption (a checksum differs, a file is missing or cannot be decoded): the step is moved to
  checkpoints_unreadable/ beside checkpoints/ (never deleted; a read-only reader only skips it;
  when checkpoints/ is on another filesystem, a link or a mount, it is renamed within it to
  `<step>.unreadable-<time>`, which Orbax does not list) and the previous one is tried;
- a saved tree that differs from the template: `CheckpointMismatchError`, worded by the caller
  (the trainer names the settings that changed);
- an I/O or memory error: `CheckpointReadError`; nothing is moved.
When checkpoints exist and none restores, the reader fails rather than returning nothing.
This module sits below weights/ and training/ and imports neither.
"""

import contextlib
import errno
import logging
import os
import time
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jax_resnet.errors import UserError

log = logging.getLogger(__name__)

OK, CORRUPT, FATAL = 0, 1, 2
# The checkpoint format this version writes and reads: 1 = metadata 'checksums' holds the CRC-32
# of each state array as 8 hex digits, by path. Steps saved before the version was recorded
# carry no 'format' and are read as 1.
FORMAT_VERSION = 1
# Failures that say nothing about the files: the storage or the machine, not the checkpoint.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ENOMEM, errno.EACCES,
                     errno.EPERM, errno.ESTALE, errno.ECONNRESET, errno.EBUSY}
_TRANSIENT_STATUS = ('RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED',
                     'PERMISSION_DENIED', 'ABORTED', 'CANCELLED', 'Out of memory')


class CheckpointError(UserError):
  """A checkpoint that cannot be read or written: this module's error type (the trainer's
  write failure, `training.checkpoints.CheckpointWriteError`, is one too)."""


class CheckpointMismatchError(CheckpointError):
  """The saved train state has another structure than the template."""


class CheckpointReadError(CheckpointError):
  """Restoring failed for a reason that is not the checkpoint's content."""

def flat_arrays(tree) -> dict:
  """{'params/conv_init/kernel': leaf, ...}: one naming for trees, dataclasses and metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path, simple=True, separator='/'): leaf for path, leaf in leaves}


def checksums(tree) -> dict:
  """CRC-32 of each array's bytes, by path."""
  return {name: f'{zlib.crc32(np.ascontiguousarray(leaf).reshape(-1).view(np.uint8)):08x}'
          for name, leaf in flat_arrays(jax.device_get(tree)).items()}


def reason_of(error) -> str:
  return f'{type(error).__name__}: {(str(error).splitlines() or [""])[0][:200]}'


def causes(error):
  """The error and those it was raised from or during."""
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__


def _is_transient(error) -> bool:
  """An error of the storage or the machine rather than of the files' content."""
  return any(isinstance(e, MemoryError)
             or (isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS)
             or any(status in str(e) for status in _TRANSIENT_STATUS) for e in causes(error))


def agree(code: int, gather=None) -> int:
  """The worst of every process's outcome, so all act alike (a collective on many hosts)."""
  if jax.process_count() == 1 and gather is None:
    return code
  if gather is None:
    from jax.experimental import multihost_utils
    gather = multihost_utils.process_allgather
  return int(np.max(np.asarray(gather(np.int32(code)))))


@contextlib.contextmanager
def _quiet_orbax(quiet: bool):
  """Orbax's warnings (absl's logger) off while `quiet`."""
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  if quiet:
    absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _describe_mismatch(step, directory, paths, meta) -> str:
  """The mismatch line when the caller has no settings to blame."""
  parts = sorted({path.split('/')[0] for path in paths})
  return (f'Checkpoint step {step} in {directory} holds a train state of another shape than '
          f'expected ({len(paths)} array(s) differ in {", ".join(parts)}, first {paths[0]}); '
          'read it with the settings it was written with.')


class CheckpointReader:
  """A trainer's checkpoints/ directory, read with the restore rule above. Read-only (the
  default) never moves anything; the trainer's `Checkpoints` (read_only=False, `keep` steps
  kept) sets corrupt steps aside and adds saving."""

  def __init__(self, directory: str, keep: int = 1, read_only: bool = True):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self.aside = self._aside_directory()  # where corrupt steps went (set aside by restore)
    options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else keep,
                                           create=not read_only, read_only=read_only)
    handlers = {'state': ocp.StandardCheckpointHandler(), 'data': ocp.JsonCheckpointHandler(),
                'meta': ocp.JsonCheckpointHandler()}
    with _quiet_orbax(read_only):  # its notes on read-only managers are noise for readers
      self.manager = ocp.CheckpointManager(self.directory, options=options,
                                           item_handlers=handlers)

  def latest_step(self):
    return self.manager.latest_step()

  def restore(self, template_state=None, explain_mismatch=None, only_step=None):
    """Newest checkpoint that restores, as (step, state, data_state, meta); None if there is
    none. `explain_mismatch(step, directory, paths, meta)` words the line for a saved tree that
    differs from the template (the trainer's names the settings that changed). Without a
    template the state comes back as the saved tree of numpy arrays (the weights readers);
    `only_step` verifies that one step and falls back to no other."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    if only_step is not None:
      steps = [s for s in steps if s == only_step]
    skipped = []
    for step in steps:
      code, outcome = self._try(step, template_state,
                                explain_mismatch or _describe_mismatch)
      agreed = agree(code)
      if agreed == OK:
        if skipped:
          log.warning('%s checkpoint step %d in %s; newer step(s) %s did not verify (see above)%s.',
                      'using' if self.read_only else 'resuming from', step, self.directory,
                      ', '.join(str(s) for s, _ in skipped),
                      ', nothing was moved' if self.read_only else '')
        return outcome
      if agreed == FATAL:
        raise outcome if code == FATAL else CheckpointReadError(
            f'Another process could not read checkpoint step {step} in {self.directory} (see '
            'its log); nothing was moved. Rerun every process with the same command.')
      reason = outcome if code == CORRUPT else 'corrupt on another process'
      skipped.append((step, reason))
      if only_step is None:
        self._set_aside(step, reason)
    if steps:
      first = f'step {skipped[0][0]}: {skipped[0][1]}'
      if self.read_only:
        raise CheckpointReadError(
            f'None of the {len(steps)} checkpoint(s) in {self.directory} verifies (steps '
            f'{", ".join(map(str, steps))}; {first}); nothing was moved. Read another workdir, '
            'or rerun its training to write a new checkpoint.')
      raise CheckpointReadError(
          f'None of the {len(steps)} checkpoint(s) in {self.directory} restores (steps '
          f'{", ".join(map(str, steps))}, each corrupt); not starting again from step 0. They '
          f'are kept in {self.aside}; to train from scratch use a new --workdir.')
    return None

  def _try(self, step, template, explain_mismatch):
    """(OK, restored) | (CORRUPT, reason) | (FATAL, error) for one step on this process."""
    try:
      saved = self.manager.item_metadata(step)['state']
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      meta = meta['meta']
    except Exception as error:
      return self._failure(step, error)
    meta = meta if isinstance(meta, dict) else {}
    written = meta.get('format', FORMAT_VERSION)
    if written != FORMAT_VERSION:
      return FATAL, CheckpointReadError(
          f'Checkpoint step {step} in {self.directory} was written by another version of '
          f'jax_resnet (checkpoint format {written!r}; this one reads format {FORMAT_VERSION}); '
          'nothing was moved. Read it with the version that wrote it, or use a new --workdir.')
    if not flat_arrays(saved):  # Orbax reports a missing tree metadata file as no tree
      return CORRUPT, 'the saved tree metadata is missing or empty'
    if template is None:  # numpy arrays: the saved shardings may name absent devices
      template = jax.tree.map(lambda leaf: np.empty(leaf.shape, leaf.dtype), saved)
    mismatch = _tree_difference(saved, template)
    if mismatch:
      return FATAL, CheckpointMismatchError(explain_mismatch(step, self.directory, mismatch,
                                                             meta))
    args = ocp.args.Composite(state=ocp.args.StandardRestore(template),
                              data=ocp.args.JsonRestore())  # meta: read above
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as error:
      return self._failure(step, error)
    expected = meta.get('checksums')
    if expected is None:
      log.warning('checkpoint step %d in %s has no checksums (written by a version before '
                  'they were recorded), so it is read unverified.', step, self.directory)
    else:
      actual = checksums(restored['state'])
      bad = sorted(name for name in set(expected) | set(actual)
                   if expected.get(name) != actual.get(name))
      if bad:
        return CORRUPT, (f'checksum mismatch in {len(bad)} array(s), first {bad[0]}: '
                         'the files changed after they were written')
    return OK, (step, restored['state'], restored['data'], meta)

  def _failure(self, step, error):
    if _is_transient(error):
      return FATAL, CheckpointReadError(
          f'Reading checkpoint step {step} in {self.directory} failed ({reason_of(error)}); this '
          'is an error of the storage or the machine, not of the checkpoint, so nothing was '
          'moved. Fix it and rerun the same command.')
    return CORRUPT, reason_of(error)

  def _aside_directory(self):
    return os.path.join(os.path.dirname(self.directory), 'checkpoints_unreadable')

  def _set_aside(self, step: int, reason: str):
    """Moves a corrupt step out of the manager's view (never deleted: it may hold what a person
    wants to recover), so a new save of the same step can happen. Read-only: skipped."""
    if self.read_only:
      log.warning('checkpoint step %d in %s is unreadable (%s); trying the previous one.',
                  step, self.directory, reason)
      return
    stamp = time.strftime('%Y%m%d-%H%M%S')
    target = os.path.join(self._aside_directory(), f'{step}.{stamp}')
    if jax.process_index() == 0:  # one writer on a shared filesystem
      target = _move_aside(os.path.join(self.directory, str(step)), target,
                           os.path.join(self.directory, f'{step}.unreadable-{stamp}'))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f'jax_resnet set aside {step}')
    self.manager.reload()
    self.aside = os.path.dirname(target)
    log.warning('checkpoint step %d in %s is unreadable (%s); moved it to %s and trying the '
                'previous one.', step, self.directory, reason, target)


def _move_aside(step_dir: str, target: str, renamed: str) -> str:
  """Moves `step_dir` to `target`; when that is on another filesystem (checkpoints/ a link or a
  mount point), renames it to `renamed` beside itself instead. Returns where it went."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  try:
    os.replace(step_dir, target)
    return target
  except OSError as error:
    if error.errno != errno.EXDEV:
      raise
  with contextlib.suppress(OSError):
    os.rmdir(os.path.dirname(target))  # only if this call left it empty
  os.replace(step_dir, renamed)
  return renamed


def _tree_difference(saved, template) -> list:
  """Paths whose presence, shape or dtype differ between the saved tree and the template."""
  saved, wanted = flat_arrays(saved), flat_arrays(template)
  differ = sorted(set(saved) ^ set(wanted))
  for name in sorted(set(saved) & set(wanted)):
    have, want = saved[name], wanted[name]
    if tuple(getattr(have, 'shape', ())) != tuple(np.shape(want)):
      differ.append(name)
    elif getattr(have, 'dtype', None) is not None and np.dtype(have.dtype) != np.asarray(
        want).dtype:
      differ.append(name)
  return differ


def trainer_layout(path: str):
  """(checkpoints directory, step or None) when `path` is a train.py workdir, its checkpoints/
  folder, one checkpoints/<step> folder or that step's state/ folder; else None."""
  path = os.path.abspath(path)  # Orbax takes absolute paths only
  if os.path.basename(path) == 'state' and os.path.basename(os.path.dirname(path)).isdigit():
    path = os.path.dirname(path)
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return os.path.join(path, 'checkpoints'), None
  if os.path.basename(path).isdigit() and os.path.isdir(os.path.join(path, 'state')):
    return os.path.dirname(path), int(os.path.basename(path))
  if any(name.isdigit() and os.path.isdir(os.path.join(path, name, 'state'))
         for name in os.listdir(path)):
    return path, None
  return None


def read_verified(path: str):
  """The one reader of a train.py workdir for tools that have no train state template
  (weights.load, predict, init_from): (step, state as nested dicts of numpy arrays, meta) of
  the newest step whose tree and CRC-32s verify, with the trainer's rule and fallback (a newer
  step that fails is named in a warning; nothing is moved); a step folder is verified alone.
  None when `path` is not in that layout or holds no step; CheckpointReadError when no step
  verifies."""
  layout = trainer_layout(path)
  if layout is None:
    return None
  directory, step = layout
  restored = CheckpointReader(directory).restore(only_step=step)
  if restored is None:
    return None
  step, state, _, meta = restored
  return step, state, meta
