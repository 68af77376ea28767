"""train.py on real storage faults: a full tmpfs, a read-only bind mount, /dev/full, a file as
--workdir, a config.json holding null, and Ctrl-C or SIGTERM at awkward moments. Each is one
`error:` line (or one explaining line), never a traceback. Mounting needs root; where the tests
cannot mount, those tests are skipped with the reason."""

import os
import signal
import subprocess
import time

import pytest

from mounts import mount_or_skip, tmpfs

from test_train_cli import SHORT, _train


def _run(args, timeout=300):
  proc = _train(args)
  out, err = proc.communicate(timeout=timeout)
  assert 'Traceback' not in out + err, err[-3000:]
  return proc.returncode, out, err


def _errors(err):
  return [line for line in err.splitlines() if 'error:' in line]


_mount = mount_or_skip


@pytest.fixture
def small_tmpfs(tmp_path):
  with tmpfs(tmp_path / 'small', 'size=1m') as target:  # a resnet20 checkpoint is 2.2 MB
    yield target


@pytest.mark.slow  # test_reliability's full disk during a save runs by default
def test_a_full_disk_during_a_checkpoint_is_one_line_exit_2_and_no_summary(small_tmpfs):
  workdir = small_tmpfs / 'w'
  code, _, err = _run([f'--workdir={workdir}', '--config.num_train_steps=2',
                       '--config.checkpoint_every_steps=100', *SHORT])
  assert code == 2
  assert _errors(err) == [
      f'error: Writing a checkpoint to {workdir}/checkpoints failed (OSError: [Errno 28] No '
      'space left on device); no earlier checkpoint exists. Free space or fix the storage, then '
      'rerun the same command to resume.']
  assert not os.path.exists(workdir / 'summary.json')


def test_a_full_disk_on_config_json_is_one_line(small_tmpfs):
  workdir = small_tmpfs / 'w'
  workdir.mkdir()
  (workdir / '.lock').write_text('x' * 100)  # its page is reused for the lock holder's line
  with open(small_tmpfs / 'filler', 'wb', buffering=0) as f:  # fill the rest of the filesystem
    try:
      while True:
        f.write(b'\0' * 4096)
    except OSError:
      pass
  code, _, err = _run([f'--workdir={workdir}', *SHORT])
  assert code == 2
  [line] = _errors(err)
  assert line.startswith(f'error: writing {workdir}/config_history/')
  assert line.endswith('.json failed ([Errno 28] No space left on device); free space, then '
                       'rerun the same command (it resumes from the newest checkpoint).')


@pytest.mark.slow  # a full disk on config.json (below) runs by default
def test_a_full_disk_on_metrics_jsonl_is_one_line(tmp_path):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  os.symlink('/dev/full', workdir / 'metrics.jsonl')  # every write: ENOSPC, for real
  code, _, err = _run([f'--workdir={workdir}', '--config.num_train_steps=2', *SHORT])
  assert code == 2
  assert _errors(err) == [
      f'error: writing {workdir}/metrics.jsonl failed ([Errno 28] No space left on device); '
      'free space, then rerun the same command (it resumes from the newest checkpoint).']


def test_a_read_only_workdir_is_one_line(tmp_path):
  source, target = tmp_path / 'source', tmp_path / 'read_only'
  source.mkdir()
  target.mkdir()
  _mount(['--bind', str(source)], target)
  try:
    _mount(['-o', 'remount,ro,bind'], target)
    code, _, err = _run([f'--workdir={target}', *SHORT])
  finally:
    subprocess.run(['umount', '-l', str(target)], check=False)
  assert code == 2
  assert _errors(err) == [
      f'error: opening the lock file {target}/.lock failed ([Errno 30] Read-only file system); '
      'use a writable --workdir, then rerun the same command (it resumes from the newest '
      'checkpoint).']
  assert os.listdir(source) == []


def test_a_file_as_workdir_and_a_null_config_json_are_one_line(tmp_path):
  afile = tmp_path / 'notes.txt'
  afile.write_text('mine')
  code, _, err = _run([f'--workdir={afile}', *SHORT])
  assert code == 2
  assert _errors(err) == [
      f'error: Workdir {afile} exists and is not a directory; pass a directory (a new one, or a '
      "previous run's to resume it)."]
  assert afile.read_text() == 'mine'
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'config.json').write_text('null')
  code, _, err = _run([f'--workdir={workdir}', *SHORT])
  assert code == 2
  assert _errors(err) == [
      f'error: {workdir}/config.json cannot be read (ValueError: it holds null, not a JSON '
      'object of settings); it records the run in this workdir. Restore it from a copy, or use '
      'a new --workdir.']


def _wait_for(path, timeout=180):
  deadline = time.time() + timeout
  while time.time() < deadline and not (os.path.exists(path) and os.path.getsize(path)):
    time.sleep(0.05)
  assert os.path.exists(path), f'{path} did not appear'


@pytest.mark.slow
def test_ctrl_c_saves_the_current_step_and_the_rerun_resumes(tmp_path):
  workdir = str(tmp_path / 'w')
  args = [f'--workdir={workdir}', '--config.num_train_steps=400',
          '--config.checkpoint_every_steps=1000', *SHORT]
  proc = _train(args)
  _wait_for(os.path.join(workdir, 'metrics.jsonl'))
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert 'Traceback' not in out + err, err[-3000:]
  assert proc.returncode == 0
  saved = [line for line in out.splitlines() if line.startswith('SIGINT: saved')]
  assert len(saved) == 1, out[-2000:]
  step = int(saved[0].split('at step ')[1].split(' ')[0])
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == [str(step)]
  code, out, _ = _run(args[:1] + [f'--config.num_train_steps={step + 2}'] + args[2:])
  banner = [line for line in out.splitlines() if line.startswith('jax_resnet: training')]
  assert code == 0 and banner[0].endswith(f', resumed at step {step}')


def test_sigterm_during_setup_is_one_line_and_exit_0(tmp_path):
  workdir = tmp_path / 'w'
  proc = _train([f'--workdir={workdir}', *SHORT])
  _wait_for(workdir / '.lock')  # the run holds its workdir: restore and compilation follow
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert 'Traceback' not in out + err, err[-3000:]
  assert proc.returncode == 0
  assert out.splitlines() == ['SIGTERM before training started: nothing was lost (no step was '
                              'trained); rerun the same command to resume.']
  assert os.listdir(workdir / 'checkpoints') == []


@pytest.fixture
def ext4_remounting_read_only(tmp_path):
  """A loop-mounted ext4 with errors=remount-ro, as data disks are mounted."""
  image, target = tmp_path / 'disk.img', tmp_path / 'ext4'
  target.mkdir()
  with open(image, 'wb') as f:
    f.truncate(64 * 2 ** 20)
  made = subprocess.run(['mkfs.ext4', '-q', str(image)], capture_output=True, text=True)
  if made.returncode:
    pytest.skip(f'mkfs.ext4 is not available here ({made.stderr.strip()})')
  _mount(['-o', 'loop,errors=remount-ro', str(image)], target)
  yield target
  subprocess.run(['umount', '-l', str(target)], check=False)


@pytest.mark.slow  # ~20 s: a run until its first checkpoint
def test_storage_turning_read_only_mid_run_is_one_line(ext4_remounting_read_only):
  workdir = ext4_remounting_read_only / 'w'
  proc = _train([f'--workdir={workdir}', '--config.num_train_steps=2000',
                 '--config.checkpoint_every_steps=10', *SHORT])
  deadline = time.time() + 180
  while time.time() < deadline and not os.path.isdir(workdir / 'checkpoints' / '10'):
    time.sleep(0.05)
  # The journal aborts and ext4 remounts itself read-only, as on a disk error (files stay open).
  subprocess.run(['mount', '-o', 'remount,abort', str(ext4_remounting_read_only)], check=True)
  out, err = proc.communicate(timeout=180)
  assert proc.returncode == 2 and 'Traceback' not in out + err, err[-3000:]
  [line] = err.strip().splitlines()
  assert line.startswith((f'error: writing {workdir}/metrics.jsonl failed ',
                          f'error: writing {workdir}/tensorboard failed ',
                          f'error: Writing a checkpoint to {workdir}/checkpoints failed ')), line
  assert 'Read-only file system' in line
  assert not os.path.exists(workdir / 'summary.json')
