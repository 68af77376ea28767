"""ResNet-D and BiT take every option the other nets take: each checked for what it promises
(same function, dtype, identity blocks, no batch statistics), on tiny copies of the rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compiled
import jax_resnet as jr
from jax_resnet.layers import avg_pool_shortcut, standardize_kernel
from jax_resnet.training import optim, steps

# 40 -> 20 -> 10 -> 10 -> 5 -> 3 -> 2: stage 3 and 4 shortcuts pool odd maps (partial windows).
X = jax.random.normal(jax.random.key(1), (2, 40, 40, 3))
TINY = {
    'resnet26d': dict(stage_sizes=(1, 2, 1, 1), stage_widths=(16, 32, 64, 128)),
    'bit_resnet50x1': dict(stage_sizes=(1, 2, 1, 1), stem_width=32, stage_widths=(32,) * 4),
}


def _model(name, **overrides):
  return jr.create_model(name, **{**TINY[name], **overrides})


def _init(name, **overrides):
  model = _model(name, **overrides)
  return model, compiled.init(model, jax.random.key(0), X, train=False)


def _relative(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize('name', sorted(TINY))
def test_computation_options_keep_the_function(name):
  """conv1x1_as_dot and (for BiT's 7x7/2) stem_conv compute the same net from the same
  weights, up to float32 round-off."""
  model, variables = _init(name)
  ref = compiled.apply(model, variables, X, train=False)
  alternatives = [dict(conv1x1_as_dot=True)]
  if name.startswith('bit'):
    alternatives += [dict(stem_conv='pad_channels'), dict(stem_conv='space_to_depth')]
  for overrides in alternatives:
    other = compiled.apply(_model(name, **overrides), variables, X, train=False)
    assert _relative(other, ref) < 1e-5


@pytest.mark.parametrize('name', sorted(TINY))
def test_bfloat16_compute_and_parameters(name):
  model, variables = _init(name, dtype='bfloat16', param_dtype='bfloat16')
  assert {leaf.dtype for leaf in jax.tree.leaves(variables['params'])} == {jnp.dtype('bfloat16')}
  logits, _ = compiled.apply(model, variables, X, train=True, mutable=['batch_stats'])
  assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 1000)
  assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize('name', sorted(TINY))
def test_zero_init_residual_starts_every_block_as_identity(name):
  """The last BN scale (ResNet-D) or the last conv kernel (BiT, also once standardized) is
  zero: every residual branch is exactly zero at init."""
  model, variables = _init(name, zero_init_residual=True)
  _, state = compiled.apply(model, variables, X, train=False, mutable=['intermediates'])
  residuals = jax.tree.leaves(state['intermediates'])
  assert len(residuals) == 5
  assert all(float(jnp.max(jnp.abs(r))) == 0.0 for r in residuals)


def test_group_norm_net_has_no_batch_statistics():
  """BiT's GroupNorm normalises each example by itself: nothing to keep, train equals eval,
  and the BatchNorm options (cross-replica axis, freezing) change nothing."""
  model, variables = _init('bit_resnet50x1')
  assert list(variables) == ['params']
  train, updates = compiled.apply(model, variables, X, train=True, mutable=['batch_stats'])
  assert updates == {}
  np.testing.assert_array_equal(train, compiled.apply(model, variables, X, train=False))
  for overrides in (dict(freeze_batch_norm=True), dict(bn_axis_name='batch')):
    out = compiled.apply(_model('bit_resnet50x1', **overrides), variables, X, train=True)
    np.testing.assert_array_equal(out, train)


def test_backbone_and_features_of_the_deep_stem():
  model, variables = _init('resnet26d')
  # Op by op, both: the equality below is of the same operations, which two compiled programs
  # (one with the head, one without) need not keep to the last bit.
  features = model.apply(variables, X, train=False, return_features=True)
  shapes = {k: v.shape for k, v in features.items()}
  assert shapes == {'stem': (2, 10, 10, 64), 'stage1': (2, 10, 10, 64),
                    'stage2': (2, 5, 5, 128), 'stage3': (2, 3, 3, 256),
                    'stage4': (2, 2, 2, 512), 'pre_logits': (2, 512), 'logits': (2, 1000)}
  backbone = _model('resnet26d', num_classes=0)
  params = {k: v for k, v in variables['params'].items() if k != 'head'}
  pooled = backbone.apply({**variables, 'params': params}, X, train=False)
  np.testing.assert_array_equal(pooled, features['pre_logits'])


def test_average_pool_shortcut_is_ceil_mode_without_padding_in_the_count():
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  out = avg_pool_shortcut(x, (2, 2))[0, :, :, 0]
  grid = np.arange(25.0).reshape(5, 5)
  assert out.shape == (3, 3)
  np.testing.assert_allclose(out[0, 0], grid[:2, :2].mean())
  np.testing.assert_allclose(out[0, 2], grid[:2, 4].mean())   # a 2x1 window: mean of 2
  np.testing.assert_allclose(out[2, 2], grid[4, 4])           # a 1x1 window: the value
  assert avg_pool_shortcut(x, (1, 1)) is x


def test_standardized_kernel_has_zero_mean_and_unit_variance_per_output():
  kernel = jax.random.normal(jax.random.key(0), (3, 3, 8, 4)) * 5 + 2
  w = standardize_kernel(kernel)
  np.testing.assert_allclose(w.mean((0, 1, 2)), 0, atol=1e-6)
  np.testing.assert_allclose(w.var((0, 1, 2)), 1, rtol=1e-5)
  np.testing.assert_array_equal(standardize_kernel(jnp.zeros((1, 1, 4, 2))), 0)


@pytest.mark.slow
def test_train_step_of_a_group_norm_net_keeps_no_statistics():
  model = _model('bit_resnet50x1', num_classes=10)
  tx = optim.make_optimizer('sgd', momentum=0.0, nesterov=False, weight_decay=0.0,
                            weight_decay_mode='l2', decay_bn_and_bias=True)
  state = steps.create_train_state(model, tx, jax.random.key(0), (40, 40, 3))
  schedule = optim.make_schedule('constant', 0.1, total_steps=10)
  step = jax.jit(steps.make_train_step(model, tx, schedule))
  batch = {'image': X, 'label': jnp.array([1, 7])}
  new, metrics = step(state, batch, jax.random.key(2))
  assert new.batch_stats == {} and int(new.step) == 1
  assert bool(jnp.isfinite(metrics['loss']))
  kernel = lambda s: s.params['stage1_block1']['conv1']['kernel']
  assert float(jnp.max(jnp.abs(kernel(new) - kernel(state)))) > 0
