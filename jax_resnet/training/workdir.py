"""The run directory: one run at a time (an exclusive lock), its remembered config (config.json
and a dated copy per accepted start, so what earlier steps used is kept), and small files
written atomically (a crash or a full disk leaves the old file or the new one, never a
truncated mix). A storage error on any of them is one line (`WorkdirError`)."""

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import tempfile
import time

import jax

from jax_resnet.data import eval_record
from jax_resnet.errors import TrainingError, UserError
from jax_resnet.training.spec import RunSpec

LOCK_FILE = '.lock'
HISTORY_DIR = 'config_history'


class WorkdirError(TrainingError):
  """The workdir cannot be used: not a folder, in use by another run, its config.json
  unreadable or another run's, or storage errors (read-only, full disk)."""


@contextlib.contextmanager
def storage_errors(what: str):
  """An OSError while `what` (e.g. 'writing runs/x/config.json') as one WorkdirError line."""
  try:
    yield
  except OSError as error:
    if isinstance(error, UserError):
      raise
    reason = error.strerror or str(error)
    hint = {errno.ENOSPC: 'free space', errno.EDQUOT: 'free space (quota)',
            errno.EROFS: 'use a writable --workdir', errno.EACCES: 'use a writable --workdir',
            errno.EPERM: 'use a writable --workdir'}.get(error.errno, 'fix the storage')
    raise WorkdirError(f'{what} failed ([Errno {error.errno}] {reason}); {hint}, then rerun the '
                       'same command (it resumes from the newest checkpoint).') from None


def create(workdir: str) -> list:
  """Makes the workdir; returns the paths this call created (removed again if the run is
  refused before it starts, so a refusal leaves nothing behind)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'Workdir {workdir} exists and is not a directory; pass a directory '
                       '(a new one, or a previous run\'s to resume it).')
  created, missing = [], os.path.abspath(workdir)
  while missing and not os.path.exists(missing):
    created.insert(0, missing)
    missing = os.path.dirname(missing)
  with storage_errors(f'creating workdir {workdir}'):
    os.makedirs(workdir, exist_ok=True)
  if not os.path.lexists(os.path.join(workdir, LOCK_FILE)):
    created.append(os.path.join(os.path.abspath(workdir), LOCK_FILE))
  for name in ('checkpoints',):
    if not os.path.exists(os.path.join(workdir, name)):
      created.append(os.path.join(os.path.abspath(workdir), name))
  return created


def remove_created(created: list):
  """Removes what `create` made (and the trainer put in it empty), newest first: empty
  folders and the lock file only, so nothing a person wrote can go."""
  for path in reversed(created):
    try:
      if os.path.isdir(path):
        os.rmdir(path)  # only when empty
      elif os.path.basename(path) == LOCK_FILE:
        os.remove(path)
    except OSError:
      pass  # not empty or already gone: keep it


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def write_atomic(path: str, text: str):
  """Writes `text` to `path` through a temporary file in the same directory and a rename. The
  temporary is created new (O_EXCL, an unpredictable name: `tempfile.mkstemp`), so a link
  planted in the workdir is never written through; the rename replaces a link at `path` itself,
  not the file it points to. The file gets the usual mode (0666 less the umask)."""
  folder, name = os.path.split(os.path.abspath(path))
  handle, temporary = tempfile.mkstemp(dir=folder, prefix=f'.{name}.', suffix='.tmp')
  try:
    with os.fdopen(handle, 'w') as f:
      os.fchmod(f.fileno(), 0o666 & ~_umask())
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  finally:
    if os.path.lexists(temporary):
      os.remove(temporary)


class WorkdirLock:
  """An exclusive advisory lock on workdir/.lock, held while a run trains. The operating
  system drops it when the holder dies, so a stale lock (a killed run) is simply taken over.
  It guards one machine's runs, and a shared filesystem's where it supports flock."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.file = None

  def acquire(self):
    handle = self._open()
    try:
      fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or 'another process'
      handle.close()
      raise WorkdirError(
          f'Workdir {os.path.dirname(self.path)} is in use by {holder}; two runs in one workdir '
          'would interleave their checkpoints and logs. Wait for that run, stop it, or use '
          'another --workdir.') from None
    try:
      with storage_errors(f'writing the lock file {self.path}'):
        handle.seek(0)
        handle.truncate()
        handle.write(f'pid {os.getpid()} on host {socket.gethostname()} '
                     f'(since {time.strftime("%Y-%m-%d %H:%M:%S")})\n')
        handle.flush()
    except WorkdirError:
      handle.close()
      raise
    self.file = handle
    return self

  def _open(self):
    """The lock file, opened without following a link (O_NOFOLLOW): a link planted as .lock
    would make the run truncate the file it points to, outside the workdir."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with storage_errors(f'opening the lock file {self.path}'):
      try:
        descriptor = os.open(self.path, flags, 0o666)
      except OSError as error:
        if error.errno != errno.ELOOP:  # ELOOP: the last component is a link
          raise
        descriptor = None
    if descriptor is not None:
      if stat.S_ISREG(os.fstat(descriptor).st_mode):
        return os.fdopen(descriptor, 'r+')
      os.close(descriptor)
    kind = 'a symbolic link' if descriptor is None else 'not a regular file'
    raise WorkdirError(
        f'The lock file {self.path} is {kind}; the trainer will not write its lock through it '
        '(a link would make it overwrite the file it points to). Remove it, then rerun.')

  def release(self):
    if self.file is not None:
      fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
      self.file.close()
      self.file = None


def check_config(spec: RunSpec, workdir: str):
  """Refuses to resume a workdir that another model or dataset wrote (`spec.identity`: the
  settings a resume must keep, compared with config.json's)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      previous = json.load(f)
    if not isinstance(previous, dict):
      raise ValueError(f'it holds {json.dumps(previous)[:40]}, not a JSON object of settings')
  except (OSError, ValueError) as error:
    raise WorkdirError(
        f'{path} cannot be read ({type(error).__name__}: {error}); it records the run in this '
        'workdir. Restore it from a copy, or use a new --workdir.') from None
  changed = [f'{k}: {previous[k]!r} -> {value!r}' for k, value in spec.identity.items()
             if k in previous and previous[k] != value]
  if changed:
    raise WorkdirError(
        f'Workdir {workdir} holds a run with a different setup ({"; ".join(changed)}); '
        'resuming it would mix two runs. Use a new --workdir, or delete that one.')


def write_config(spec: RunSpec, workdir: str):
  """config.json (the latest) and config_history/<UTC start time>.json (this start's)."""
  if jax.process_index() != 0:
    return
  text = json.dumps(json.loads(spec.config_json), indent=2, sort_keys=True)
  history = os.path.join(workdir, HISTORY_DIR)
  stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
  for path in (os.path.join(history, f'{stamp}.json'), os.path.join(workdir, 'config.json')):
    with storage_errors(f'writing {path}'):
      os.makedirs(history, exist_ok=True)
      write_atomic(path, text)


def write_eval_preprocessing(spec: RunSpec, workdir: str):
  """eval_preprocessing.json (and mean_image.npy for normalize='per_pixel_mean'): what the eval
  pipeline does to an image (`data.eval_record`), so predict and export feed the network as
  this run evaluates it."""
  if jax.process_index() != 0:
    return
  record = eval_record.of_spec(spec.data)
  with storage_errors(f'writing {os.path.join(workdir, eval_record.RECORD_FILE)}'):
    eval_record.write(record, workdir)
