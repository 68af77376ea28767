"""Faults a long run meets: corrupted checkpoints, non-finite losses, invalid configs."""

import errno
import glob
import json
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import jax_resnet as jr
from jax_resnet import data
from jax_resnet.config import resolve, train_and_evaluate
from jax_resnet.errors import ConfigError, DataError, TrainingError, UserError
from jax_resnet.training import loop, optim, setup, steps
from jax_resnet.training.checkpoints import Checkpoints, CheckpointWriteError
from test_training import _config, _restore


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  train_and_evaluate(_config(), workdir)
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


# One kind of damage in the default run; the other two where CI runs the slow tests.
@pytest.mark.parametrize('corrupt', [pytest.param(_truncate_data, marks=pytest.mark.slow),
                                     pytest.param(_delete_metadata, marks=pytest.mark.slow),
                                     _garbage_metadata])
def test_corrupted_latest_checkpoint_falls_back_and_training_continues(
    finished_run, tmp_path, corrupt, caplog):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished_run, workdir)
  os.remove(os.path.join(workdir, 'summary.json'))
  corrupt(os.path.join(workdir, 'checkpoints', '12'))
  with caplog.at_level(logging.WARNING):
    summary = train_and_evaluate(_config(), workdir)
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


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_last_good_checkpoint(tmp_path):
  train_and_evaluate(_config(num_train_steps=4, checkpoint_every_steps=4), str(tmp_path))
  # The same workdir, continued with a learning rate that blows up.
  config = _config(learning_rate=1e12, log_every_steps=2, checkpoint_every_steps=2,
                   num_train_steps=20)
  with pytest.raises(loop.TrainingDivergedError) as err:
    train_and_evaluate(config, str(tmp_path))
  message = str(err.value)
  assert message.startswith('Loss or gradients became non-finite at step ')
  bad_step = int(message.split('at step ')[1].split(';')[0])
  last_good = int(message.split('checkpoint is step ')[1].split(' ')[0])
  assert 4 <= last_good < bad_step and str(last_good) in os.listdir(tmp_path / 'checkpoints')
  assert str(bad_step) not in os.listdir(tmp_path / 'checkpoints')


@pytest.mark.slow
def test_skip_nonfinite_updates_counts_and_keeps_weights_finite(tmp_path):
  config = _config(learning_rate=1e12, skip_nonfinite_updates=True, num_train_steps=8,
                   log_every_steps=4, checkpoint_every_steps=8, eval_every_steps=8)
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == 8 and summary['skipped_updates'] >= 1
  _, state, _, _ = _restore(str(tmp_path), config)
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state.params))


@pytest.mark.slow
def test_a_diverging_run_keeps_only_finite_checkpoints_and_names_a_finite_one(tmp_path):
  train_and_evaluate(_config(num_train_steps=4, checkpoint_every_steps=4), str(tmp_path))
  # Checkpoints every 2 steps, metrics fetched only every 40: saves must still be checked.
  config = _config(learning_rate=1e12, log_every_steps=40, checkpoint_every_steps=2,
                   keep_checkpoints=3, num_train_steps=40, eval_every_steps=1000)
  with pytest.raises(loop.TrainingDivergedError) as err:
    train_and_evaluate(config, str(tmp_path))
  named = int(str(err.value).split('checkpoint is step ')[1].split(' ')[0])
  kept = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))
  assert named == kept[-1]
  assert _restore(str(tmp_path), config)[0] == kept[-1]  # the newest restores ...
  # ... and every kept step holds finite arrays only.
  manager = Checkpoints(os.path.join(tmp_path, 'checkpoints'), 3, read_only=True).manager
  for step in kept:
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state['state'])), step


def test_skip_nonfinite_updates_also_refuses_weights_that_overflow():
  """Finite loss and gradients, but a learning rate that sends the weights to inf."""
  import optax
  model = jr.create_model('resnet20', num_classes=10)
  tx = optim.make_optimizer('sgd', momentum=0.0, nesterov=False, weight_decay=0.0,
                            weight_decay_mode='l2', decay_bn_and_bias=True)
  state = steps.create_train_state(model, tx, jax.random.key(0), (8, 8, 3), ema=False,
                                   warming_up=False)
  batch = {'image': jax.random.normal(jax.random.key(1), (4, 8, 8, 3)),
           'label': np.array([0, 1, 2, 3], np.int32)}
  schedule = optax.constant_schedule(3e38)
  step = jax.jit(steps.make_train_step(model, tx, schedule, skip_nonfinite_updates=True))
  new_state, metrics = step(state, batch, jax.random.key(2))
  assert np.isfinite(metrics['loss']) and float(metrics['grads_finite']) == 0.0
  assert int(new_state.step) == 1
  for new, old in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(new, old)


def test_a_full_disk_during_a_save_is_one_line_and_the_previous_checkpoint_survives(
    tmp_path, monkeypatch):
  train_and_evaluate(_config(num_train_steps=6), str(tmp_path))
  full = OSError(errno.ENOSPC, 'No space left on device')

  def failing_wait(self):  # an asynchronous save's error surfaces when it is awaited
    raise RuntimeError('async save failed') from full

  monkeypatch.setattr(ocp.CheckpointManager, 'wait_until_finished', failing_wait)
  with pytest.raises(CheckpointWriteError) as err:
    train_and_evaluate(_config(), str(tmp_path))
  assert str(err.value) == (
      f'Writing a checkpoint to {tmp_path}/checkpoints failed (OSError: [Errno 28] No space '
      'left on device); step 6 is intact there. Free space or fix the storage, then rerun the '
      'same command to resume.')
  monkeypatch.undo()
  assert _restore(str(tmp_path), _config())[0] == 6


def test_an_empty_eval_split_is_refused_before_training(tmp_path):
  spec = resolve(_config())
  info = data.DatasetInfo(num_classes=10, num_train=1437, num_eval=0, image_shape=(8, 8, 3))
  with pytest.raises(DataError) as err:
    setup.check_against_dataset(spec, info)
  assert str(err.value) == ("eval_split 'test' of 'digits' holds no examples, so nothing can be "
                            'evaluated; choose a split (or a TFDS slice) that has some.')


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


@pytest.fixture
def copied_run(finished_run, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished_run, workdir)
  return workdir


def test_summary_is_written_only_after_the_final_checkpoint_is_committed(tmp_path, monkeypatch):
  full = OSError(errno.ENOSPC, 'No space left on device')
  original_save = Checkpoints.save

  def save(self, step, *args):  # the final save (step 6) fails when it is awaited
    saved = original_save(self, step, *args)
    if step == 6:
      def failing_wait():
        raise RuntimeError('async save failed') from full
      self.manager.wait_until_finished = failing_wait
    return saved

  monkeypatch.setattr(Checkpoints, 'save', save)
  with pytest.raises(CheckpointWriteError) as err:
    train_and_evaluate(_config(num_train_steps=6, checkpoint_every_steps=4), str(tmp_path))
  assert str(err.value).startswith(f'Writing a checkpoint to {tmp_path}/checkpoints failed '
                                   '(OSError: [Errno 28] No space left on device); step 4 is '
                                   'intact there.')
  assert not os.path.exists(tmp_path / 'summary.json')


@pytest.mark.slow  # 50 s: device_data compiles a scan of steps
def test_resuming_with_another_steps_per_dispatch_that_would_overshoot_is_refused(tmp_path):
  # The first run dispatches one step at a time: a scan of several steps over the dataset held
  # on the devices costs about 70 s to run here with XLA's optimisations off (conftest.py)
  # against 16 s for single steps, and the refusal only needs the checkpoint at step 6.
  device = dict(device_data=True, log_every_steps=2, eval_every_steps=1000)
  train_and_evaluate(_config(num_train_steps=6, checkpoint_every_steps=6,
                             steps_per_dispatch=1, **device), str(tmp_path))
  with pytest.raises(TrainingError) as err:
    train_and_evaluate(_config(num_train_steps=8, steps_per_dispatch=4, **device),
                            str(tmp_path))
  assert str(err.value) == (
      'The checkpoint is at step 6, so 2 steps are left to num_train_steps=8, '
      'not a multiple of steps_per_dispatch=4 (the last dispatch would overshoot); resume with '
      'a steps_per_dispatch that divides 2.')
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['6']


def test_a_refused_resume_leaves_config_json_as_it_was(copied_run):
  before = open(os.path.join(copied_run, 'config.json')).read()
  with pytest.raises(DataError) as err:
    train_and_evaluate(_config(seed=7, num_train_steps=18), copied_run)
  assert 'the saved data iterator has seed=0 but this run has 7' in str(err.value)
  assert open(os.path.join(copied_run, 'config.json')).read() == before


def test_rows_replayed_after_a_resume_are_not_duplicated(copied_run):
  """As after kill -9 between two checkpoints: rows up to step 12, checkpoint 6 only."""
  shutil.rmtree(os.path.join(copied_run, 'checkpoints', '12'))
  os.remove(os.path.join(copied_run, 'summary.json'))
  train_and_evaluate(_config(), copied_run)
  rows = [json.loads(line) for line in open(os.path.join(copied_run, 'metrics.jsonl'))]
  assert [(r['split'], r['step']) for r in rows] == [
      ('train', 4), ('train', 6), ('eval', 6), ('train', 8), ('train', 12), ('eval', 12)]


def test_a_finished_workdir_trains_nothing_and_keeps_its_summary(copied_run, capsys):
  before = open(os.path.join(copied_run, 'summary.json')).read()
  summary = train_and_evaluate(_config(num_train_steps=8), copied_run)
  assert summary['steps'] == 12
  assert open(os.path.join(copied_run, 'summary.json')).read() == before
  assert capsys.readouterr().out == (
      f'jax_resnet: nothing to train: {copied_run} finished at step 12 and this config trains '
      '8 steps; its summary.json is kept.\n')


def test_changed_settings_are_named_and_each_start_keeps_its_config(copied_run, capsys):
  os.remove(os.path.join(copied_run, 'summary.json'))
  history = os.path.join(copied_run, 'config_history')
  first = sorted(os.listdir(history))
  train_and_evaluate(_config(weight_decay=0.001, num_train_steps=14), copied_run)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == ('jax_resnet: settings changed since checkpoint step 12 was written: '
                      'num_train_steps: 12 -> 14; weight_decay: 0.0001 -> 0.001.')
  configs = [json.load(open(os.path.join(history, name))) for name in sorted(os.listdir(history))]
  assert len(configs) == len(first) + 1
  assert configs[-1]['weight_decay'] == 0.001 and configs[0]['weight_decay'] == 0.0001


@pytest.mark.parametrize('overrides, what', [
    (dict(dataset='no_such_dataset_xyz'), 'an unknown dataset'),
    (dict(init_from='HEAD5_NPZ'), 'a pretrained head of another size'),
])
def test_a_refusal_leaves_nothing_behind(tmp_path, overrides, what):
  if overrides.get('init_from') == 'HEAD5_NPZ':
    from jax_resnet import weights
    model = jr.create_model('resnet20', num_classes=5)
    variables = jax.jit(lambda k: model.init(k, np.zeros((1, 16, 16, 3)), train=False))(
        jax.random.key(0))
    overrides = dict(init_from=weights.save_npz(tmp_path / 'head5.npz', variables))
  workdir = tmp_path / 'runs' / 'new'
  with pytest.raises(UserError):
    train_and_evaluate(_config(**overrides), str(workdir))
  assert not os.path.exists(tmp_path / 'runs'), what


def test_skip_nonfinite_updates_checks_the_new_batch_statistics():
  """Finite loss, gradients and weights, but a running statistic that overflows: the step is
  skipped (on main it was applied, and the run failed only at its next save)."""
  import flax.linen as nn
  import jax.numpy as jnp
  import optax

  class OverflowingStatistic(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      big = self.variable('batch_stats', 'big', lambda: jnp.full((), 3e38, jnp.float32))
      if train:
        big.value = big.value * 10.0  # inf in float32; the output does not depend on it
      return nn.Dense(3)(x.reshape(x.shape[0], -1))

  model = OverflowingStatistic()
  tx = optim.make_optimizer('sgd', momentum=0.0, nesterov=False, weight_decay=0.0,
                            weight_decay_mode='l2', decay_bn_and_bias=True)
  state = steps.create_train_state(model, tx, jax.random.key(0), (2, 2, 1), ema=False,
                                   warming_up=False)
  batch = {'image': np.ones((4, 2, 2, 1), np.float32), 'label': np.array([0, 1, 2, 0], np.int32)}
  step = jax.jit(steps.make_train_step(model, tx, optax.constant_schedule(0.1),
                                       skip_nonfinite_updates=True))
  new_state, metrics = step(state, batch, jax.random.key(1))
  assert np.isfinite(metrics['loss']) and float(metrics['grads_finite']) == 0.0
  assert float(new_state.batch_stats['big']) == np.float32(3e38)
  np.testing.assert_array_equal(new_state.params['Dense_0']['kernel'],
                                state.params['Dense_0']['kernel'])
