"""`jax_resnet.model_info`: what each registered model takes and gives, from its registry row."""

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from jax_resnet import weights


def test_facts_of_a_cifar_an_imagenet_and_two_video_models():
  assert jr.model_info('resnet20') == jr.ModelInfo(
      name='resnet20', family='cifar', input_kind='image', input_size=32, num_frames=None,
      num_classes=10, min_input_size=4, min_num_frames=None, stem='cifar')
  assert jr.model_info('resnet50') == jr.ModelInfo(
      name='resnet50', family='imagenet', input_kind='image', input_size=224, num_frames=None,
      num_classes=1000, min_input_size=32, min_num_frames=None, stem='imagenet',
      tags=('resnet50.a1_in1k', 'resnet50.tv_in1k', 'resnet50.tv2_in1k', 'resnet50.a1h_in1k'))
  assert jr.model_info('r2plus1d_18') == jr.ModelInfo(
      name='r2plus1d_18', family='kinetics', input_kind='video', input_size=112, num_frames=16,
      num_classes=400, min_input_size=16, min_num_frames=8, stem='r2plus1d',
      tags=('r2plus1d_18.tv_kinetics400',))
  # The deep (ResNet-D) and BiT stems downsample as the ImageNet stem does.
  for name, stem, tags in (
      ('resnet26d', 'deep', ('resnet26d.bt_in1k',)),
      ('bit_resnet152x4', 'bit', ('resnetv2_152x4_bit.goog_in21k_ft_in1k',
                                  'bit_resnet152x4.bit_m_in21k_ft_in1k'))):
    assert jr.model_info(name) == jr.ModelInfo(
        name=name, family='imagenet', input_kind='image', input_size=224, num_frames=None,
        num_classes=1000, min_input_size=32, min_num_frames=None, stem=stem, tags=tags)
  # mc3 convolves time in its first stage only, so time is never downsampled.
  assert jr.model_info('mc3_18').min_num_frames == 1
  assert jr.model_info('resnet20').input_shape == (32, 32, 3)
  assert jr.model_info('r3d_18').input_shape == (16, 112, 112, 3)


def test_unknown_name_is_the_registry_error():
  with pytest.raises(ValueError) as err:
    jr.model_info('resnet_50')
  assert str(err.value) == ("Unknown model 'resnet_50'. Did you mean resnet50, resnet50d, "
                            'resnet56? jax_resnet.list_models() lists all 54.')


def test_every_model_agrees_with_the_module_it_builds():
  kinds, families = {}, {}
  for name in jr.list_models():
    info, model = jr.model_info(name), jr.create_model(name)
    assert (info.num_classes, info.input_kind, info.stem) == (
        model.num_classes, type(model).input_kind, model.stem)
    kinds.setdefault(info.input_kind, set()).add(name)
    families[info.family] = families.get(info.family, 0) + 1
  assert kinds['video'] == set(weights.VIDEO_MODELS) == {'mc3_18', 'r2plus1d_18', 'r3d_18'}
  assert families == {'imagenet': 33, 'cifar': 18, 'kinetics': 3}


def _features(name, side, frames=None):
  model = jr.create_model(name)
  shape = (1, side, side, 3) if frames is None else (1, frames, side, side, 3)
  apply = lambda x: model.init_with_output(jax.random.key(0), x, train=False,
                                           return_features=True)[0]
  features = jax.eval_shape(apply, jax.ShapeDtypeStruct(shape, jnp.float32))
  return {k: v.shape for k, v in features.items()}


@pytest.mark.parametrize('name', ['resnet20', 'resnet50', 'preact_resnet164', 'wrn16_4',
                                  'r3d_18', 'resnet26d', 'resnet18d', 'bit_resnet50x1'])
def test_min_input_size_is_the_smallest_that_every_stride_halves(name):
  """At min_input_size the last stage is 1x1 and the one before 2x2; at half of it the last
  stride has nothing left to halve: both are 1x1."""
  info = jr.model_info(name)
  stages = len(jr.create_model(name).stage_sizes)
  last, before = f'stage{stages}', f'stage{stages - 1}'
  frames = info.min_num_frames  # None for images
  ones = (1,) * (2 if frames is None else 3)
  at_min = _features(name, info.min_input_size, frames)
  assert at_min['logits'] == (1, info.num_classes)
  assert (at_min[last][1:-1], at_min[before][1:-1]) == (ones, tuple(2 * n for n in ones))
  half = _features(name, info.min_input_size // 2, frames and frames // 2)
  assert half[last][1:-1] == half[before][1:-1] == ones
