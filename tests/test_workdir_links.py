"""No write through a link planted in a workdir: the lock file and `write_atomic`'s temporary
are opened without following links (real symbolic links to a file outside the workdir, whose
content the tests compare before and after)."""

import os
import stat

import pytest

import jax_resnet as jr
from jax_resnet.config import train_and_evaluate
from jax_resnet.training import workdir as workdir_lib
from jax_resnet.training.workdir import WorkdirError


@pytest.fixture
def outside(tmp_path):
  """A file outside the workdir that a planted link points to."""
  path = tmp_path / 'precious.txt'
  path.write_text('a file the trainer must not touch\n')
  return path


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_is_unchanged(tmp_path, outside):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  os.symlink(outside, workdir / '.lock')
  config = jr.load_config('default')
  config.num_train_steps = 2
  with pytest.raises(WorkdirError) as err:
    train_and_evaluate(config, str(workdir))
  assert str(err.value) == (
      f'The lock file {workdir}/.lock is a symbolic link; the trainer will not write its lock '
      'through it (a link would make it overwrite the file it points to). Remove it, then '
      'rerun.')
  assert outside.read_text() == 'a file the trainer must not touch\n'
  assert os.listdir(workdir) == ['.lock'] and os.path.islink(workdir / '.lock')


def test_a_lock_file_that_is_a_fifo_is_refused(tmp_path):
  os.mkfifo(tmp_path / '.lock')
  with pytest.raises(WorkdirError) as err:
    workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  assert str(err.value).startswith(f'The lock file {tmp_path}/.lock is not a regular file;')


def test_write_atomic_never_writes_through_a_planted_link(tmp_path, outside):
  target = tmp_path / 'config.json'
  # The temporary name main used (path.tmp.<pid>) and the target itself, both links outside.
  os.symlink(outside, f'{target}.tmp.{os.getpid()}')
  os.symlink(outside, tmp_path / 'summary.json')
  previous = os.umask(0o022)
  try:
    workdir_lib.write_atomic(str(target), '{"a": 1}')
    workdir_lib.write_atomic(str(tmp_path / 'summary.json'), '{"b": 2}')
  finally:
    os.umask(previous)
  assert outside.read_text() == 'a file the trainer must not touch\n'
  for name, text in (('config.json', '{"a": 1}'), ('summary.json', '{"b": 2}')):
    mode = os.lstat(tmp_path / name).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644  # the umask's, not 0600
    assert (tmp_path / name).read_text() == text
  assert sorted(os.listdir(tmp_path)) == sorted(
      ['precious.txt', f'config.json.tmp.{os.getpid()}', 'config.json', 'summary.json'])
