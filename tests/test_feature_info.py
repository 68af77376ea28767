"""`jax_resnet.feature_info`: each `return_features` level's channels and reduction, equal to
the maps the model returns and to timm's feature_info."""

import functools

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from jax_resnet.weights import timm as timm_weights


def _returned_levels(name, output_stride, side):
  model = jr.create_model(name, output_stride=output_stride)
  x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  forward = lambda key, x: model.init_with_output(key, x, train=False,
                                                  return_features=True)[0]
  features = jax.eval_shape(forward, jax.random.key(0), x)
  return features


@pytest.mark.parametrize('name, output_stride, side', [
    ('resnet50', 32, 96), ('resnet50', 8, 96), ('resnet18d', 16, 64), ('resnet20', 32, 32),
    ('bit_resnet50x1', 16, 128)])
def test_levels_state_the_shapes_return_features_gives(name, output_stride, side):
  levels = jr.feature_info(name, output_stride)
  features = _returned_levels(name, output_stride, side)
  stages = len(jr.create_model(name).stage_sizes)
  assert [level.name for level in levels] == ['stem'] + [f'stage{i + 1}' for i in range(stages)]
  assert set(features) - {level.name for level in levels} == {'pre_logits', 'logits'}
  for level in levels:
    shape = features[level.name].shape
    assert shape == (1, side // level.reduction, side // level.reduction, level.channels)


def test_resnet50_levels_at_output_stride_16():
  assert jr.feature_info('resnet50', 16) == (
      jr.FeatureLevel('stem', 64, 4), jr.FeatureLevel('stage1', 256, 4),
      jr.FeatureLevel('stage2', 512, 8), jr.FeatureLevel('stage3', 1024, 16),
      jr.FeatureLevel('stage4', 2048, 16))
  assert jr.model_info('resnet50').feature_info(16) == jr.feature_info('resnet50', 16)
  assert [level.reduction for level in jr.feature_info('resnet56')] == [1, 1, 2, 4]


@pytest.mark.parametrize('ours', ['resnet18', 'resnext50_32x4d', 'resnet26d', 'preact_resnet50',
                                  'bit_resnet50x1'])
@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_stage_levels_equal_timms_feature_info(ours, output_stride):
  timm = pytest.importorskip('timm')
  torch = pytest.importorskip('torch')
  with torch.device('meta'):
    model = timm.create_model(timm_weights.TIMM_NAMES[ours], pretrained=False,
                              output_stride=output_stride)
  expected = [(info['num_chs'], info['reduction']) for info in model.feature_info]
  levels = jr.feature_info(ours, output_stride)
  # timm's last four levels are the stages; its first is the stem before the max pool
  # (reduction 2) where our 'stem' is after it (4), with the same channels.
  assert [(lv.channels, lv.reduction) for lv in levels[1:]] == expected[1:]
  assert (levels[0].channels, levels[0].reduction) == (expected[0][0], 2 * expected[0][1])


def test_video_models_have_no_feature_info():
  with pytest.raises(ValueError) as err:
    jr.feature_info('r3d_18')
  assert str(err.value) == 'feature_info describes image models; r3d_18 takes video clips.'


def test_feature_info_is_computed_once_per_model_and_stride():
  jr.feature_info.cache_clear()
  first = jr.feature_info('resnet18', 8)
  assert jr.feature_info('resnet18', 8) is first
  assert jr.feature_info.cache_info().hits == 1
  assert functools.reduce(max, (lv.reduction for lv in first)) == 8


def test_readme_segmentation_example_runs():
  from test_readme import _python_block_with
  namespace = {}
  source = _python_block_with('class Segmenter(')
  exec(compile(source, 'README.md', 'exec'), namespace)  # noqa: S102  the README's own code
  assert namespace['masks'].shape == (2, 64, 64, 21)
  assert set(namespace['variables']['params']) == {'backbone', 'classifier'}
