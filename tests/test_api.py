"""The public API contract: registry, options, errors, features, dtypes."""

import re

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr


def test_list_models_is_sorted_and_filters():
  names = jr.list_models()
  assert names == sorted(names) and len(names) == 54
  assert jr.list_models('resnet*') == [
      'resnet101', 'resnet101d', 'resnet110', 'resnet1202', 'resnet152', 'resnet152d',
      'resnet18', 'resnet18d', 'resnet20', 'resnet200', 'resnet200d', 'resnet26', 'resnet26d',
      'resnet32', 'resnet34', 'resnet34d', 'resnet44', 'resnet50', 'resnet50d', 'resnet56']
  assert jr.list_models('bit_*') == [
      'bit_resnet101x1', 'bit_resnet101x3', 'bit_resnet152x2', 'bit_resnet152x4',
      'bit_resnet50x1', 'bit_resnet50x3']
  assert jr.list_models('wrn*') == ['wrn16_4', 'wrn16_8', 'wrn28_10', 'wrn40_4']
  assert jr.list_models('nothing*') == []


def test_unknown_model_names_close_matches():
  with pytest.raises(ValueError) as err:
    jr.create_model('resnet_50')
  assert str(err.value) == ("Unknown model 'resnet_50'. Did you mean resnet50, resnet50d, "
                            'resnet56? jax_resnet.list_models() lists all 54.')


def test_unknown_option_names_the_field():
  with pytest.raises(TypeError, match=re.escape(
      "create_model('resnet18') got unknown option(s) num_class; valid options:")):
    jr.create_model('resnet18', num_class=10)


@pytest.mark.parametrize('overrides, message', [
    (dict(shortcut='D'), "resnet20: shortcut must be one of A, B, C, got 'D'."),
    (dict(drop_path_rate=1.0), 'resnet20: drop_path_rate must be in [0, 1), got 1.0.'),
    (dict(num_classes=-1), 'resnet20: num_classes must be >= 0 (0 drops the head), got -1.'),
])
def test_invalid_option_values(overrides, message):
  with pytest.raises(ValueError) as err:
    jr.create_model('resnet20', **overrides)
  assert str(err.value) == message


def test_wrong_input_rank_is_one_clear_error():
  model = jr.create_model('resnet20')
  with pytest.raises(ValueError) as err:
    model.init(jax.random.key(0), jnp.zeros((16, 16, 3)), train=False)
  assert str(err.value) == ('ResNet expects a rank-4 input (batch, height, width, channels), '
                            'got shape (16, 16, 3); add the batch axis or transpose to '
                            'channels-last.')
  with pytest.raises(ValueError) as err:
    model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3), bool), train=False)
  assert str(err.value) == ('ResNet expects real-valued pixels, got dtype bool; convert images '
                            'to float32 first.')
  with pytest.raises(ValueError, match='VideoResNet expects a rank-5 input'):
    jr.create_model('r3d_18').init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)


def test_overrides_reach_the_module():
  model = jr.create_model('resnet50', num_classes=7, zero_init_residual=True, shortcut='C')
  assert (model.num_classes, model.zero_init_residual, model.shortcut) == (7, True, 'C')
  assert jr.create_model('wrn28_10', dropout_rate=0.3).dropout_rate == 0.3


def test_bfloat16_compute_with_float32_params_and_statistics():
  model = jr.create_model('resnet20', dtype='bfloat16')
  x = jnp.ones((2, 16, 16, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 10)
  assert {a.dtype for a in jax.tree.leaves(variables['params'])} == {jnp.dtype('float32')}
  assert {a.dtype for a in jax.tree.leaves(updates['batch_stats'])} == {jnp.dtype('float32')}


def test_named_features_for_backbone_use():
  model = jr.create_model('resnet18')
  x = jnp.ones((2, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  feats = jax.eval_shape(
      lambda v: model.apply(v, x, train=False, return_features=True), variables)
  assert {k: v.shape for k, v in feats.items()} == {
      'stem': (2, 16, 16, 64), 'stage1': (2, 16, 16, 64), 'stage2': (2, 8, 8, 128),
      'stage3': (2, 4, 4, 256), 'stage4': (2, 2, 2, 512), 'pre_logits': (2, 512),
      'logits': (2, 1000)}
  headless = jr.create_model('resnet18', num_classes=0)
  v0 = jax.eval_shape(lambda: headless.init(jax.random.key(0), x, train=False))
  assert 'head' not in v0['params']
  assert jax.eval_shape(lambda v: headless.apply(v, x, train=False), v0).shape == (2, 512)


def _stage2_conv_shapes(**overrides):
  model = jr.create_model('resnet50', **overrides)
  x = jnp.ones((1, 64, 64, 3))
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  _, state = jax.eval_shape(lambda v: model.apply(
      v, x, train=False, capture_intermediates=True, mutable=['intermediates']), v)
  block = state['intermediates']['stage2_block1']
  return block['conv1']['__call__'][0].shape, block['conv2']['__call__'][0].shape


def test_bottleneck_stride_position():
  # torchvision "v1.5": stride on the 3x3; the paper's original: stride on the first 1x1.
  assert _stage2_conv_shapes() == ((1, 16, 16, 128), (1, 8, 8, 128))
  assert _stage2_conv_shapes(stride_in_1x1=True) == ((1, 8, 8, 128), (1, 8, 8, 128))


def test_dropout_rate_only_where_wide_resnet_puts_it():
  with pytest.raises(ValueError, match='dropout_rate applies to pre-activation basic blocks'):
    model = jr.create_model('resnet50', dropout_rate=0.3)
    model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)
