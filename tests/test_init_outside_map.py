"""Every family initialises with train=True outside any device map, cross-replica BatchNorm
included (the Flax ImageNet example's `model.init(key, x)` before pmap), and gets exactly the
variables of a train=False init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr

SMALL = dict(stage_sizes=(1, 1), stage_widths=(8, 16), stem_width=8, num_classes=3)
# name, options, input shape: one model of each family, small enough to compile in seconds.
FAMILIES = {
    'image': ('resnet18', SMALL, (2, 32, 32, 3)),
    'image_drop_path_scan': ('resnet50', dict(SMALL, stage_sizes=(2, 1), drop_path_rate=0.2,
                                               scan_blocks=True), (2, 32, 32, 3)),
    'cifar': ('resnet20', dict(stage_sizes=(1, 1), stage_widths=(16, 32)), (2, 16, 16, 3)),
    'preact': ('preact_resnet18', SMALL, (2, 32, 32, 3)),
    'resnet_d': ('resnet26d', SMALL, (2, 32, 32, 3)),
    'bit_group_norm': ('bit_resnet50x1', dict(SMALL, stage_widths=(32, 32), stem_width=32),
                       (2, 32, 32, 3)),
    'video': ('r3d_18', dict(stage_sizes=(1, 1), stage_widths=(8, 16), num_classes=3),
              (1, 2, 16, 16, 3)),
}


def _init(model, x, **kwargs):
  return jax.jit(lambda key, x: model.init(key, x, **kwargs))(jax.random.key(0), x)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_train_init_outside_a_device_map_equals_eval_init(family):
  name, options, shape = FAMILIES[family]
  x = jax.random.normal(jax.random.key(1), shape)
  cross_replica = jr.create_model(name, bn_axis_name='batch', **options)
  train = _init(cross_replica, x)  # the default train=True; no map binds 'batch'
  evaluation = _init(jr.create_model(name, **options), x, train=False)
  assert jax.tree.structure(train) == jax.tree.structure(evaluation)
  for got, want in zip(jax.tree.leaves(train), jax.tree.leaves(evaluation)):
    np.testing.assert_array_equal(got, want)
  # A batch-norm model has running statistics to keep; they start at (0, 1), untouched by init.
  stats = jax.tree.leaves(train.get('batch_stats', {}))
  assert (len(stats) > 0) == (family != 'bit_group_norm')


def test_train_init_inside_a_map_still_reduces_across_replicas():
  """The apply that follows init computes the statistics over every replica."""
  model = jr.create_model('resnet18', bn_axis_name='batch', **SMALL)
  x = jax.random.normal(jax.random.key(2), (2, 2, 32, 32, 3))
  variables = _init(model, x[0])
  apply = lambda v, x: model.apply(v, x, mutable=['batch_stats'])[1]['batch_stats']
  stats = jax.pmap(apply, axis_name='batch', in_axes=(None, 0),
                   devices=jax.devices()[:2])(variables, x)
  mean = stats['bn_init']['mean']
  # Both replicas hold the mean of the whole batch (0.1 of it after one momentum-0.9 step).
  np.testing.assert_array_equal(mean[0], mean[1])
  whole = jr.create_model('resnet18', **SMALL).apply(
      variables, x.reshape((4, 32, 32, 3)), mutable=['batch_stats'])[1]['batch_stats']
  np.testing.assert_allclose(mean[0], whole['bn_init']['mean'], rtol=1e-4, atol=1e-6)
  assert float(jnp.max(jnp.abs(mean[0]))) > 0
