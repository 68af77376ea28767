"""The workdir: one run at a time, a remembered config that is never left half-written, and
settings that would destroy a run refused before it starts."""

import os
import subprocess
import sys

import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.config import resolve, train_and_evaluate
from jax_resnet.errors import ConfigError
from jax_resnet.training import workdir as workdir_lib
from jax_resnet.training.workdir import WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD_LOCK = ('import sys, time; from jax_resnet.training.workdir import WorkdirLock; '
             'lock = WorkdirLock(sys.argv[1]).acquire(); print("locked", flush=True); '
             'time.sleep(120)')


def _config(**overrides):
  config = jr.load_config('default')
  config.update(dict(num_train_steps=2, progress_bar=False, **overrides))
  return config


def test_keep_checkpoints_below_one_is_refused():
  for value in (0, -1):
    with pytest.raises(ConfigError) as err:
      resolve(_config(keep_checkpoints=value))
    assert str(err.value) == (f'Invalid config: keep_checkpoints must be an integer >= 1, got '
                              f'{value}: with none kept every checkpoint would be deleted.')


@pytest.mark.parametrize('key, value', [('learning_rate', float('inf')),
                                        ('weight_decay', float('nan')),
                                        ('model_options.drop_path_rate', float('nan'))])
def test_non_finite_settings_are_refused(key, value):
  config = _config()
  section, _, leaf = key.rpartition('.')
  (config[section] if section else config)[leaf] = value
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == (f'Invalid config: {key}={value} is not finite; every real-valued '
                            'setting must be a finite number.')


def test_a_second_run_stops_and_a_dead_runs_lock_is_taken_over(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirError) as err:
      train_and_evaluate(_config(), str(tmp_path))
    message = str(err.value)
    assert message.startswith(f'Workdir {tmp_path} is in use by pid {holder.pid} on host ')
    assert message.endswith('Wait for that run, stop it, or use another --workdir.')
    assert not os.path.exists(tmp_path / 'config.json')  # nothing of the run was touched
  finally:
    holder.kill()
    holder.wait()
  lock = workdir_lib.WorkdirLock(str(tmp_path)).acquire()  # the dead holder's lock is free
  try:
    assert (tmp_path / '.lock').read_text().startswith(f'pid {os.getpid()} on host ')
  finally:
    lock.release()


def test_an_unreadable_config_json_is_one_line(tmp_path):
  (tmp_path / 'config.json').write_text('{"model": "resn')  # a write cut short
  with pytest.raises(WorkdirError) as err:
    train_and_evaluate(_config(), str(tmp_path))
  assert str(err.value).startswith(f'{tmp_path}/config.json cannot be read (JSONDecodeError: ')
  assert '\n' not in str(err.value)


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
  path = str(tmp_path / 'config.json')
  workdir_lib.write_atomic(path, 'old')

  def full_disk(*args):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(os, 'replace', full_disk)
  with pytest.raises(OSError):
    workdir_lib.write_atomic(path, 'new')
  assert open(path).read() == 'old'
  assert os.listdir(tmp_path) == ['config.json']  # the temporary file is gone too


def test_weights_from_a_workdir_are_the_ema_the_run_evaluated(tmp_path, monkeypatch):
  from jax_resnet import weights
  from jax_resnet.analysis import common
  workdir = tmp_path / 'ema_run'
  train_and_evaluate(_config(ema_decay=0.5, batch_size=32), str(workdir))
  monkeypatch.chdir(tmp_path)  # a relative path, as `predict --weights ema_run` passes it
  loaded = weights.load('resnet20', 'ema_run')
  evaluated = common.workdir_subject(str(workdir)).variables  # the trainer's eval weights
  kernel = lambda tree: np.asarray(tree['params']['conv_init']['kernel'])
  np.testing.assert_array_equal(kernel(loaded), kernel(evaluated))


@pytest.mark.slow
def test_weights_from_a_scan_blocks_workdir_are_unrolled(tmp_path):
  from jax_resnet import weights
  from jax_resnet.weights.trees import flatten
  from jax_resnet.analysis import common
  config = _config(batch_size=32)
  config.model_options.scan_blocks = True
  train_and_evaluate(config, str(tmp_path))
  loaded = weights.load('resnet20', str(tmp_path))
  unrolled = common.workdir_subject(str(tmp_path)).variables  # the analysis tools unstack too
  assert 'stage1_block3' in loaded['params'] and 'stage1_scan' not in loaded['params']
  flat_loaded, flat_unrolled = (flatten(v) for v in (loaded, unrolled))
  assert sorted(flat_loaded) == sorted(flat_unrolled)
  for name, value in flat_unrolled.items():
    np.testing.assert_array_equal(flat_loaded[name], value, err_msg=name)
