"""Checkpoints record their format version: a step of another version is named as such and
nothing moves; a step without checksums is read with a warning; and a corrupt step is set aside
without a cross-device move when checkpoints/ is on another filesystem (a real tmpfs mount)."""

import glob
import json
import logging
import os

import numpy as np
import pytest

from mounts import tmpfs

from jax_resnet.checkpoint_reader import FORMAT_VERSION, CheckpointReader, CheckpointReadError
from jax_resnet.training.checkpoints import Checkpoints

STATE = {'params': {'kernel': np.arange(4096, dtype=np.float32).reshape(64, 64),
                    'bias': np.ones(64, np.float32)}}


def _save(directory, steps):
  checkpoints = Checkpoints(str(directory), keep=5)
  for step in steps:
    checkpoints.save(step, STATE, {'epoch': step}, {'step': step})
  checkpoints.wait()
  checkpoints.manager.close()


def _meta_path(directory, step):
  return os.path.join(directory, str(step), 'meta', 'metadata')


def _edit_meta(directory, step, edit):
  with open(_meta_path(directory, step)) as f:
    meta = json.load(f)
  edit(meta)
  with open(_meta_path(directory, step), 'w') as f:
    json.dump(meta, f)


def _listing(directory):
  return sorted(os.path.relpath(p, directory)
                for p in glob.glob(os.path.join(directory, '**'), recursive=True))


def test_a_step_of_another_format_version_is_named_and_nothing_moves(tmp_path):
  directory = tmp_path / 'checkpoints'
  _save(directory, [1, 2])
  with open(_meta_path(directory, 1)) as f:
    recorded = json.load(f).get('format')

  def newer(meta):  # a future version: checksums in another form
    meta['format'] = 2
    meta['checksums'] = {name: 'sha256:' + '0' * 64 for name in meta['checksums']}

  _edit_meta(directory, 2, newer)
  before = _listing(tmp_path)
  for read_only in (False, True):
    reader = CheckpointReader(str(directory), keep=5, read_only=read_only)
    with pytest.raises(CheckpointReadError) as err:
      reader.restore(STATE)
    assert str(err.value) == (
        f'Checkpoint step 2 in {directory} was written by another version of jax_resnet '
        '(checkpoint format 2; this one reads format 1); nothing was moved. Read it with the '
        'version that wrote it, or use a new --workdir.')
  assert _listing(tmp_path) == before
  assert recorded == FORMAT_VERSION == 1


def test_a_step_without_checksums_is_read_with_a_warning(tmp_path, caplog):
  directory = tmp_path / 'checkpoints'
  _save(directory, [3])

  def older(meta):  # written before formats and checksums were recorded
    meta.pop('format', None)
    del meta['checksums']

  _edit_meta(directory, 3, older)
  with caplog.at_level(logging.WARNING, logger='jax_resnet.checkpoint_reader'):
    step, state, data, _ = CheckpointReader(str(directory)).restore(STATE)
  assert (step, data) == (3, {'epoch': 3})
  np.testing.assert_array_equal(state['params']['kernel'], STATE['params']['kernel'])
  # Orbax logs too (at INFO, which another test's handler may have let through): ours only.
  assert [r.getMessage() for r in caplog.records if r.name == 'jax_resnet.checkpoint_reader'] == [
      f'checkpoint step 3 in {directory} has no checksums (written by a version before they '
      'were recorded), so it is read unverified.']


@pytest.fixture
def checkpoints_on_tmpfs(tmp_path):
  """workdir/checkpoints as a tmpfs mount point: another filesystem than the workdir's."""
  with tmpfs(tmp_path / 'workdir' / 'checkpoints', 'size=16m') as directory:
    yield directory


def test_a_corrupt_step_on_another_filesystem_is_renamed_in_place(checkpoints_on_tmpfs):
  directory = checkpoints_on_tmpfs
  _save(directory, [1, 2])
  assert os.stat(directory).st_dev != os.stat(directory.parent).st_dev
  _edit_meta(directory, 2, lambda meta: meta['checksums'].update(
      {'params/kernel': '00000000'}))  # as if the kernel's bytes had changed
  for _ in range(2):  # and a rerun restores the same step
    checkpoints = Checkpoints(str(directory), keep=5)
    step, state, _, _ = checkpoints.restore(STATE)
    checkpoints.manager.close()
    assert step == 1
    np.testing.assert_array_equal(state['params']['bias'], STATE['params']['bias'])
  names = sorted(os.listdir(directory))
  assert names[0] == '1' and len(names) == 2 and names[1].startswith('2.unreadable-')
  assert os.listdir(directory.parent) == ['checkpoints']  # no checkpoints_unreadable/ left
