"""Faults a long run meets: corrupted checkpoints, non-finite losses, invalid configs."""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import jax_resnet as jr
from jax_resnet.config import resolve
from jax_resnet.errors import ConfigError
from jax_resnet.training import loop
from test_training import _config, _restore


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  loop.train_and_evaluate(_config(), workdir)
  return workdir


def _truncate_data(step_dir):
  for path in glob.glob(os.path.join(step_dir, 'state', '**', 'd', '*'), recursive=True):
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)


def _delete_metadata(step_dir):
  os.remove(os.path.join(step_dir, 'state', '_METADATA'))


def _garbage_metadata(step_dir):
  with open(os.path.join(step_dir, 'state', '_METADATA'), 'wb') as f:
    f.write(b'{"tree_metadata": [not json')


@pytest.mark.parametrize('corrupt', [_truncate_data, _delete_metadata, _garbage_metadata])
def test_corrupted_latest_checkpoint_falls_back_and_training_continues(
    finished_run, tmp_path, corrupt, caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished_run, workdir)
  os.remove(os.path.join(workdir, 'summary.json'))
  corrupt(os.path.join(workdir, 'checkpoints', '12'))
  with caplog.at_level(logging.WARNING):
    summary = loop.train_and_evaluate(_config(), workdir)
  warnings = [r.getMessage() for r in caplog.records if 'is unreadable' in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith('checkpoint step 12 in ')
  assert len(glob.glob(os.path.join(workdir, 'checkpoints_unreadable', '12.*'))) == 1
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']
  assert summary['steps'] == 12
  # Resumed from step 6 and retrained 6 -> 12: exactly the uninterrupted result.
  _, resumed, _, _ = _restore(workdir, _config())
  _, reference, _, _ = _restore(finished_run, _config())
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params)):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_with_the_step_and_last_good_checkpoint(tmp_path):
  loop.train_and_evaluate(_config(num_train_steps=4, checkpoint_every_steps=4), str(tmp_path))
  # The same workdir, continued with a learning rate that blows up.
  config = _config(learning_rate=1e12, log_every_steps=2, checkpoint_every_steps=2,
                   num_train_steps=20)
  with pytest.raises(loop.TrainingDivergedError) as err:
    loop.train_and_evaluate(config, str(tmp_path))
  message = str(err.value)
  assert message.startswith('Loss or gradients became non-finite at step ')
  bad_step = int(message.split('at step ')[1].split(';')[0])
  last_good = int(message.split('checkpoint is step ')[1].split(' ')[0])
  assert 4 <= last_good < bad_step and str(last_good) in os.listdir(tmp_path / 'checkpoints')
  assert str(bad_step) not in os.listdir(tmp_path / 'checkpoints')


def test_skip_nonfinite_updates_counts_and_keeps_weights_finite(tmp_path):
  config = _config(learning_rate=1e12, skip_nonfinite_updates=True, num_train_steps=8,
                   log_every_steps=4, checkpoint_every_steps=8, eval_every_steps=8)
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == 8 and summary['skipped_updates'] >= 1
  _, state, _, _ = _restore(str(tmp_path), config)
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state.params))


def _valid():
  c = jr.load_config('default')
  c.batch_size, c.eval_batch_size = 64, 128
  return c


FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False))
def test_negative_learning_rates_are_refused(lr):
  config = _valid()
  config.learning_rate = lr
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == (f'Invalid config: learning_rate must be >= 0, got {lr}; a negative '
                            'rate ascends the loss.')


@FAST
@given(st.integers(min_value=1, max_value=4096))
def test_batch_sizes_are_accepted_exactly_when_divisible_by_the_devices(batch):
  config = _valid()
  config.batch_size = batch
  if batch % jax.device_count() == 0:
    assert resolve(config).data.batch_size == batch
  else:
    with pytest.raises(ConfigError) as err:
      resolve(config)
    assert str(err.value) == (f'Invalid config: batch_size={batch} is not divisible by the 8 '
                              'devices (cpu); each device needs an equal share: use a multiple '
                              'of 8.')


@FAST
@given(st.sampled_from(['resnet20', 'resnet50', 'preact_resnet164', 'wrn16_4']),
       st.integers(min_value=1, max_value=64))
def test_image_size_must_survive_the_downsampling(model, size):
  config = _valid()
  config.model, config.image_size = model, size
  factor = 4 if model in ('resnet20', 'preact_resnet164', 'wrn16_4') else 32
  if size >= max(factor, 8):
    assert resolve(config).data.image_size == size
  elif size < factor:
    with pytest.raises(ConfigError) as err:
      resolve(config)
    assert str(err.value) == (
        f'Invalid config: image_size={size} is too small for {model}: its stem and stages '
        f'downsample by {factor}; use image_size >= {factor}.')
  else:  # survives the model, not the input pipeline's smallest size
    with pytest.raises(ConfigError) as err:
      resolve(config)
    assert str(err.value) == (f'Invalid config: image_size={size} must be an integer >= 8 (the '
                              'digits are 8x8, CIFAR 32, ImageNet 224).')
