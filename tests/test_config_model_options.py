"""The trainer's model_options: derived from the model classes' fields, each reaching the
model through the config boundary, and refusals that name the model or carry the choices."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from jax_resnet.config import boundary, resolve
from jax_resnet.errors import ConfigError
from jax_resnet.training import setup


def load(name):
  return jr.load_config(name)


def test_model_options_shortcut_reaches_the_model():
  config = load('default')
  assert config.model == 'resnet20' and config.model_options.shortcut is None
  unset = resolve(config)
  assert 'shortcut' not in unset.model_kwargs
  assert setup.build_model(unset).shortcut == 'A'  # resnet20's registered option
  config.model_options.shortcut = 'B'
  spec = resolve(config)
  assert spec.model_kwargs['shortcut'] == 'B'
  model = setup.build_model(spec)
  assert model.shortcut == 'B'
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)),
                                             train=False))['params']
  assert sorted(params['stage2_block1']) == ['bn1', 'bn2', 'conv1', 'conv2', 'proj_bn',
                                             'proj_conv']


def test_model_options_are_the_model_fields_but_those_the_trainer_sets():
  """Derived from the model classes (no hand-kept list to drift): every create_model option is
  a model_options key, except the six the trainer sets from its own keys."""
  from jax_resnet.config import base
  fields = {f.name for cls in (jr.ResNet, jr.VideoResNet) for f in dataclasses.fields(cls)}
  trainer_sets = {'num_classes', 'dtype', 'param_dtype', 'bn_axis_name', 'conv1x1_as_dot',
                  'stem_conv'}
  options = jr.base_config().model_options
  assert set(options) == fields - {'parent', 'name'} - trainer_sets
  assert set(base.TRAINER_SET_OPTIONS) == trainer_sets
  assert {'padding', 'stride_in_1x1', 'conv_types'} <= set(options)
  assert all(value is None for value in options.values())
  comments = base.key_comments()
  assert comments['model_options.stride_in_1x1'] == "the paper's bottleneck stride on the first 1x1"
  assert comments['model_options.stem'].endswith("(video: 'basic' (3x7x7) | 'r2plus1d' (1x7x7 "
                                                 '-> 3x1x1))')


def test_a_config_value_outside_its_set_carries_the_choices():
  """The boundary's refusal of a fixed-set key says its choices (`UserError.choices`), its own
  set or the lower layer's with the config's 'auto' first."""
  config = load('default')
  config.dtype = 'float8'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert err.value.choices == boundary.DTYPES == ('float32', 'bfloat16', 'float16', 'float64')
  config.dtype, config.stem_conv = 'float32', 'fast'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert err.value.choices == ('auto', 'conv', 'pad_channels', 'space_to_depth')


def test_model_options_padding_same_reaches_the_model():
  """The Flax ImageNet example's model as a trainer option (`padding='same'`)."""
  config = load('default')
  config.model, config.image_size = 'resnet18', 32
  config.model_options.stage_sizes = (1, 1, 1, 1)
  assert 'padding' not in resolve(config).model_kwargs
  config.model_options.padding = 'same'
  spec = resolve(config)
  assert spec.model_kwargs['padding'] == 'same'
  assert spec.settings['model_options.padding'] == 'same'
  assert setup.build_model(spec).padding == 'same'
  config.model = 'resnet20'  # the CIFAR stem takes torch padding only: the model's own line
  config.model_options.stage_sizes = None
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == (
      "Invalid config for model 'resnet20': resnet20: padding='same' applies to the "
      "ImageNet-style stems ('imagenet', 'deep', 'bit') only; this model's stem is 'cifar' "
      "(leave padding='torch').")


def test_model_option_errors_name_the_model():
  config = load('default')
  config.model_options.shortcut = 'D'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == ("Invalid config for model 'resnet20': resnet20: shortcut must be "
                            "one of A, B, C, got 'D'.")
