"""Resuming: only corruption sets a checkpoint aside; a changed config, an I/O error or an
out-of-memory stops the run with one line and moves nothing; checksums catch flipped bytes;
processes agree; read-only tools never move anything."""

import errno
import glob
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jax_resnet import checkpoint_reader
from jax_resnet.analysis import common
from jax_resnet.config import train_and_evaluate
from jax_resnet.training import checkpoints as checkpoints_lib
from test_training import _config, _restore


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  train_and_evaluate(_config(), workdir)  # checkpoints at steps 6 and 12
  return workdir


@pytest.fixture
def copied_run(finished_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished_run, workdir)
  os.remove(os.path.join(workdir, 'summary.json'))
  return workdir


def _listing(workdir):
  return sorted(os.path.relpath(p, workdir) for p in glob.glob(
      os.path.join(workdir, 'checkpoints*', '**'), recursive=True))


def _flip_bytes(step_dir):
  """Four bytes in the middle of the largest array data file of the state."""
  files = glob.glob(os.path.join(step_dir, 'state', '**', 'd', '*'), recursive=True)
  path = max(files, key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    data = f.read(4)
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(b ^ 0xFF for b in data))


def _garbage_metadata(step_dir):
  with open(os.path.join(step_dir, 'state', '_METADATA'), 'wb') as f:
    f.write(b'{"tree_metadata": [not json')


def test_a_changed_setting_is_one_error_naming_it_and_nothing_moves(copied_run):
  before = _listing(copied_run)
  with pytest.raises(checkpoints_lib.CheckpointMismatchError) as err:
    train_and_evaluate(_config(momentum=0.0, num_train_steps=18), copied_run)
  message = str(err.value)
  assert message.startswith(f'Checkpoint step 12 in {copied_run}/checkpoints holds a train '
                            'state of another shape than this config builds (')
  assert 'in opt_state, first opt_state/' in message
  # The setting that shapes the differing part is named; the harmless change is not.
  assert "settings changed since it was written (momentum: 0.9 -> 0.0)" in message
  assert 'num_train_steps' not in message and '\n' not in message
  assert _listing(copied_run) == before


def test_a_reader_without_settings_to_blame_says_so_and_moves_nothing(copied_run):
  """The reader's own mismatch line, for callers that pass no explanation."""
  before = _listing(copied_run)
  reader = checkpoint_reader.CheckpointReader(os.path.join(copied_run, 'checkpoints'))
  saved = set(reader.restore()[3]['checksums'])  # the arrays step 12 recorded when saved
  differ = sorted(saved ^ {'params/kernel'})
  with pytest.raises(checkpoint_reader.CheckpointMismatchError) as err:
    reader.restore({'params': {'kernel': np.zeros((2, 2), np.float32)}})
  parts = ', '.join(sorted({path.split('/')[0] for path in differ}))
  assert str(err.value) == (
      f'Checkpoint step 12 in {copied_run}/checkpoints holds a train state of another shape '
      f'than expected ({len(differ)} array(s) differ in {parts}, first {differ[0]}); read it '
      'with the settings it was written with.')
  assert _listing(copied_run) == before


@pytest.mark.parametrize('failure', [OSError(errno.EIO, 'Input/output error'),
                                     MemoryError('out of memory restoring')])
def test_an_io_or_memory_error_stops_without_moving_anything(copied_run, monkeypatch, failure):
  before = _listing(copied_run)
  original = ocp.CheckpointManager.restore

  def failing_restore(self, step, args=None):
    if args is not None and 'state' in args.keys():
      raise failure
    return original(self, step, args=args)

  monkeypatch.setattr(ocp.CheckpointManager, 'restore', failing_restore)
  with pytest.raises(checkpoints_lib.CheckpointReadError) as err:
    train_and_evaluate(_config(), copied_run)
  assert str(err.value).startswith(f'Reading checkpoint step 12 in {copied_run}/checkpoints '
                                   f'failed ({type(failure).__name__}: ')
  assert 'nothing was moved' in str(err.value)
  assert _listing(copied_run) == before
  assert not os.path.exists(os.path.join(copied_run, 'summary.json'))


def test_when_no_checkpoint_restores_the_run_stops_and_keeps_them(copied_run):
  for step in ('6', '12'):
    _garbage_metadata(os.path.join(copied_run, 'checkpoints', step))
  with pytest.raises(checkpoints_lib.CheckpointReadError) as err:
    train_and_evaluate(_config(), copied_run)
  assert str(err.value).startswith(
      f'None of the 2 checkpoint(s) in {copied_run}/checkpoints restores (steps 12, 6, each '
      'corrupt); not starting again from step 0.')
  aside = sorted(os.listdir(os.path.join(copied_run, 'checkpoints_unreadable')))
  assert [name.split('.')[0] for name in aside] == ['12', '6']
  assert os.listdir(os.path.join(copied_run, 'checkpoints')) == []
  assert not os.path.exists(os.path.join(copied_run, 'summary.json'))


def test_flipped_bytes_fail_the_checksum_and_the_previous_step_is_used(
    copied_run, finished_run, caplog):
  _flip_bytes(os.path.join(copied_run, 'checkpoints', '12'))
  with caplog.at_level(logging.WARNING):
    summary = train_and_evaluate(_config(), copied_run)
  warnings = [r.getMessage() for r in caplog.records if 'is unreadable' in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith('checkpoint step 12 in ')
  assert summary['steps'] == 12
  assert [n.split('.')[0] for n in os.listdir(
      os.path.join(copied_run, 'checkpoints_unreadable'))] == ['12']
  _, resumed, _, _ = _restore(copied_run, _config())
  _, reference, _, _ = _restore(finished_run, _config())
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params)):
    np.testing.assert_array_equal(a, b)


def test_checksums_are_saved_per_array_and_detect_a_changed_value(finished_run):
  _, state, _, meta = _restore(finished_run, _config())
  sums = meta['checksums']
  assert sums == checkpoints_lib.checksums(state)
  assert len(sums) == len(jax.tree.leaves(state)) and 'params/conv_init/kernel' in sums
  changed = jax.tree.map(np.copy, state)
  changed.params['conv_init']['kernel'].flat[0] += 1.0
  assert [k for k, v in checkpoints_lib.checksums(changed).items() if sums[k] != v] == [
      'params/conv_init/kernel']


def test_every_process_acts_on_the_worst_outcome():
  assert checkpoints_lib.agree(checkpoints_lib.OK, gather=lambda x: [x, 0]) == 0
  assert checkpoints_lib.agree(checkpoints_lib.OK, gather=lambda x: [x, 1]) == 1
  assert checkpoints_lib.agree(checkpoints_lib.CORRUPT, gather=lambda x: [x, 2]) == 2


def test_a_step_another_process_cannot_read_is_skipped_here_too(copied_run, monkeypatch):
  """Hosts agree on the restored step: a peer that finds step 12 corrupt makes this process
  skip it as well, although its own copy reads fine."""
  peer_verdicts = iter([checkpoints_lib.CORRUPT])
  monkeypatch.setattr(checkpoint_reader, 'agree',
                      lambda code: max(code, next(peer_verdicts, checkpoints_lib.OK)))
  restored = _restore(copied_run, _config())
  assert restored[0] == 6
  assert [n.split('.')[0] for n in os.listdir(
      os.path.join(copied_run, 'checkpoints_unreadable'))] == ['12']


def test_read_only_tools_skip_a_corrupt_step_and_move_nothing(copied_run):
  _garbage_metadata(os.path.join(copied_run, 'checkpoints', '12'))
  before = _listing(copied_run)
  subject = common.workdir_subject(copied_run)
  assert subject.step == 6
  assert _listing(copied_run) == before


def _saved_variables(workdir, step):
  """params and batch_stats of one step, read by Orbax directly (no checksum, no fallback)."""
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return {k: state['state'][k] for k in ('params', 'batch_stats')}


def test_weights_load_of_a_workdir_verifies_checksums_and_uses_the_previous_step(
    copied_run, caplog):
  """weights.load (so predict --weights and init_from) reads a workdir as the trainer does."""
  from jax_resnet import weights
  step6 = _saved_variables(copied_run, 6)
  _flip_bytes(os.path.join(copied_run, 'checkpoints', '12'))
  before = _listing(copied_run)
  with caplog.at_level(logging.WARNING):
    loaded = weights.load('resnet20', copied_run)
  assert _listing(copied_run) == before  # read-only: nothing moved
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(step6)):
    np.testing.assert_array_equal(a, b)
  directory = os.path.join(copied_run, 'checkpoints')
  messages = [r.getMessage() for r in caplog.records if r.name.startswith('jax_resnet')]
  assert messages[0].startswith(f'checkpoint step 12 in {directory} is unreadable (')
  assert messages[-1] == (f'using checkpoint step 6 in {directory}; newer step(s) 12 did not '
                          'verify (see above), nothing was moved.')
  # One named step is verified alone: no silent fallback to another.
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet20', os.path.join(directory, '12'))
  assert str(err.value).startswith(f'None of the 1 checkpoint(s) in {directory} verifies (steps '
                                   '12; step 12: ')
  assert str(err.value).endswith('nothing was moved. Read another workdir, or rerun its '
                                 'training to write a new checkpoint.')


def test_analysis_of_a_workdir_whose_checkpoints_all_fail_is_one_line(copied_run, tmp_path,
                                                                      capsys):
  from jax_resnet.analysis.__main__ import main
  for step in ('6', '12'):
    _garbage_metadata(os.path.join(copied_run, 'checkpoints', step))
  before = _listing(copied_run)
  assert main(['gradflow', '--out', str(tmp_path / 'out'), '--models', '',
               '--workdir', copied_run]) == 2
  err = capsys.readouterr().err
  directory = os.path.join(copied_run, 'checkpoints')
  assert err.startswith(f'error: None of the 2 checkpoint(s) in {directory} verifies (steps 12, '
                        '6; step 12: ')
  assert err.count('\n') == 1 and 'checkpoints_unreadable' not in err
  assert _listing(copied_run) == before
