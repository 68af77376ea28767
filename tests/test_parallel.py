"""pmap, jit+shard_map and a single device give the same training, step for step: the same
maths summed in another order, so compared in float64 near round-off."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.config import resolve
from jax_resnet.errors import ConfigError
from jax_resnet.training import parallel, setup, steps

GLOBAL_BATCH = 16
# conftest.py simulates 8 CPU devices; on one GPU these comparisons have nothing to compare.
eight_devices = pytest.mark.skipif(jax.device_count() < 8,
                                   reason=f'needs 8 devices, {jax.default_backend()} has '
                                   f'{jax.device_count()}')


def _config(**overrides):
  config = jr.load_config('default')
  config.update(dict(model='resnet20', image_size=8, batch_size=GLOBAL_BATCH,
                     eval_batch_size=GLOBAL_BATCH, num_train_steps=3, warmup_epochs=0.0,
                     lr_schedule='constant', learning_rate=0.01), **overrides)
  return config


def _batches(n):
  rng = np.random.default_rng(0)
  return [{'image': rng.normal(size=(GLOBAL_BATCH, 8, 8, 3)).astype(np.float32),
           'label': rng.integers(0, 10, GLOBAL_BATCH).astype(np.int32)} for _ in range(n)]


def _train(parallelism, devices, sync_batch_norm=True, dtype='float64'):
  config = _config(parallelism=parallelism, sync_batch_norm=sync_batch_norm, dtype=dtype)
  parts = setup.build_run(resolve(config), num_train=1000, devices=devices)
  state = jax.jit(lambda r: steps.create_train_state(
      parts.model, parts.tx, r, (8, 8, 3)))(jax.random.key(0))
  runner = parts.runner
  state = runner.place_state(jax.device_get(state))
  losses = []
  for batch in _batches(3):
    state, metrics = runner.train_step(state, runner.place_batch(batch), jax.random.key(1))
    losses.append(float(runner.to_host(metrics)['loss']))
  return np.array(losses), runner.to_host(state)


def _max_relative(a, b):
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: np.max(np.abs(x - y)) /
                                       max(np.max(np.abs(y)), 1e-12), a, b))
  return max(float(d) for d in diffs)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='CPU devices are simulated')
def test_eight_devices_are_simulated():
  assert jax.device_count() == 8


@eight_devices
def test_pmap_shard_map_and_one_device_agree_with_sync_batch_norm(x64):
  devices = jax.devices()
  one_losses, one_state = _train('shard_map', devices[:1])
  assert jax.tree.leaves(one_state.params)[0].dtype == np.float64
  for parallelism in ('pmap', 'shard_map'):
    losses, state = _train(parallelism, devices)
    np.testing.assert_allclose(losses, one_losses, rtol=1e-12)
    assert _max_relative(state.params, one_state.params) <= 1e-10
    assert _max_relative(state.batch_stats, one_state.batch_stats) <= 1e-10
    assert int(state.step) == 3
  assert one_losses[2] < one_losses[0]  # the three steps really trained


@eight_devices
@pytest.mark.slow
def test_without_sync_batch_norm_replicas_differ_from_global_statistics():
  devices = jax.devices()
  _, one_state = _train('pmap', devices[:1], sync_batch_norm=False, dtype='float32')
  _, state = _train('pmap', devices, sync_batch_norm=False, dtype='float32')
  assert _max_relative(state.params, one_state.params) > 1e-4


@eight_devices
def test_batch_not_divisible_by_devices_is_a_clear_error():
  with pytest.raises(ConfigError) as err:
    resolve(_config(batch_size=12))
  assert str(err.value) == ('Invalid config: batch_size=12 is not divisible by the 8 devices '
                            '(cpu); each device needs an equal share: use a multiple of 8.')


def _toy_steps():
  def train(state, batch, rng):
    total = jax.lax.psum(jnp.sum(batch['x']), parallel.AXIS)
    return state + total, {'total': total}

  def evaluate(state, batch):
    return {'sum': jax.lax.psum(jnp.sum(batch['x']) * state, parallel.AXIS)}

  def multi(state, data, rng):  # data replicated: each device reads its own half
    index = jax.lax.axis_index(parallel.AXIS)
    mine = jax.lax.dynamic_slice_in_dim(data['x'], 2 * index, 2)
    return train(state, {'x': mine}, rng)

  return train, evaluate, multi


@pytest.mark.parametrize('parallelism', parallel.PARALLELISMS)
def test_both_runners_share_one_interface(parallelism):
  train, evaluate, multi = _toy_steps()
  runner = parallel.make_runner(parallelism, train, evaluate, jax.devices()[:2])
  assert isinstance(runner, parallel.Runner)
  x = {'x': np.arange(4, dtype=np.float32)}
  key = jax.random.key(0)
  state, metrics = runner.train_step(runner.place_state(np.float32(1)), runner.place_batch(x),
                                     key)
  assert (float(runner.to_host(state)), float(runner.to_host(metrics)['total'])) == (7.0, 6.0)
  assert float(runner.to_host(runner.eval_step(state, runner.place_batch(x)))['sum']) == 42.0
  lowered = runner.jitted('eval').lower(state, runner.place_batch(x))
  assert lowered.compile() is not None
  with pytest.raises(ValueError) as err:
    runner.jitted('multi')
  assert str(err.value) == ("this runner has no 'multi' step: device_data runs make one with "
                            'set_multi_step(multi_step) first.')
  runner.set_multi_step(multi)
  state, metrics = runner.multi_step(state, runner.place_state(x), key)
  assert (float(runner.to_host(state)), float(runner.to_host(metrics)['total'])) == (13.0, 6.0)
  with pytest.raises(ValueError) as err:
    runner.jitted('predict')
  assert str(err.value) == "kind must be one of train, eval, multi, got 'predict'."
