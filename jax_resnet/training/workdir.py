"""The run directory: one run at a time (an exclusive lock), its remembered config, and small
files written atomically (a crash or a full disk leaves the old file or the new one, never a
truncated mix)."""

import fcntl
import json
import os
import socket
import time

import jax

from jax_resnet.config.boundary import IDENTITY_KEYS, RunSpec
from jax_resnet.errors import ConfigError

LOCK_FILE = '.lock'


def write_atomic(path: str, text: str):
  """Writes `text` to `path` through a temporary file in the same directory and a rename."""
  temporary = f'{path}.tmp.{os.getpid()}'
  try:
    with open(temporary, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


class WorkdirLock:
  """An exclusive advisory lock on workdir/.lock, held while a run trains. The operating
  system drops it when the holder dies, so a stale lock (a killed run) is simply taken over.
  It guards one machine's runs, and a shared filesystem's where it supports flock."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.file = None

  def acquire(self):
    handle = open(self.path, 'a+')
    try:
      fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or 'another process'
      handle.close()
      raise ConfigError(
          f'Workdir {os.path.dirname(self.path)} is in use by {holder}; two runs in one workdir '
          'would interleave their checkpoints and logs. Wait for that run, stop it, or use '
          'another --workdir.') from None
    handle.seek(0)
    handle.truncate()
    handle.write(f'pid {os.getpid()} on host {socket.gethostname()} '
                 f'(since {time.strftime("%Y-%m-%d %H:%M:%S")})\n')
    handle.flush()
    self.file = handle
    return self

  def release(self):
    if self.file is not None:
      fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
      self.file.close()
      self.file = None


def check_config(spec: RunSpec, workdir: str):
  """Refuses to resume a workdir that another model or dataset wrote."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      previous = json.load(f)
  except (OSError, ValueError) as error:
    raise ConfigError(
        f'{path} cannot be read ({type(error).__name__}: {error}); it records the run in this '
        'workdir. Restore it from a copy, or use a new --workdir.') from None
  changed = [f'{k}: {previous[k]!r} -> {spec.identity[k]!r}' for k in IDENTITY_KEYS
             if k in previous and previous[k] != spec.identity[k]]
  if changed:
    raise ConfigError(
        f'Workdir {workdir} holds a run with a different setup ({"; ".join(changed)}); '
        'resuming it would mix two runs. Use a new --workdir, or delete that one.')


def write_config(spec: RunSpec, workdir: str):
  if jax.process_index() == 0:
    text = json.dumps(json.loads(spec.config_json), indent=2, sort_keys=True)
    write_atomic(os.path.join(workdir, 'config.json'), text)
