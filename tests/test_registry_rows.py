"""The registry rows own each family's facts: the converter lists, `model_info` (stem facts and
weight tags) and the tags' models are what the rows say, and a new row with sources and
published weights reaches them with no edit elsewhere."""

import pytest

import jax_resnet as jr
from jax_resnet import registry, stems, weights
from jax_resnet.models import ResNet
from jax_resnet.weights import tags, timm, torchvision


def _with_source(kind):
  """Registered names with a `kind` counterpart, asked row by row (not models_with_source)."""
  return {name for name in jr.list_models() if kind in registry.model_sources(name)}


def test_every_converter_list_is_what_the_rows_say():
  video = {name for name in jr.list_models() if jr.model_info(name).input_kind == 'video'}
  assert set(weights.IMAGE_MODELS) == _with_source('torchvision') - video
  assert set(weights.VIDEO_MODELS) == _with_source('torchvision') & video == {
      'r3d_18', 'mc3_18', 'r2plus1d_18'}
  assert weights.TORCHVISION_MODELS == weights.IMAGE_MODELS + weights.VIDEO_MODELS
  assert weights.TIMM_NAMES == {name: registry.model_sources(name)['timm']
                                for name in _with_source('timm')}
  assert set(weights.BIG_VISION_MODELS) == _with_source('bit')
  assert set(weights.TRANSFORMERS_MODELS) == _with_source('transformers')
  assert weights.FLAX_IMAGENET_MODELS == ('resnet18', 'resnet34', 'resnet50', 'resnet101',
                                          'resnet152', 'resnet200')
  assert set(weights.FLAX_IMAGENET_MODELS) == _with_source('flax_imagenet')


def test_model_info_lists_every_tag_once_its_default_first():
  listed = [tag for name in jr.list_models() for tag in jr.model_info(name).tags]
  assert sorted(listed) == weights.list_tags() and len(listed) == 49
  for name in jr.list_models():
    info_tags = jr.model_info(name).tags
    assert sorted(info_tags) == weights.list_tags(name), name
    if info_tags:
      assert info_tags[0] == weights.default_tag(name).name, name
  assert jr.model_info('resnet50d').tags == ('resnet50d.a1_in1k', 'resnet50d.ra2_in1k')
  assert jr.model_info('resnet20').tags == ()


def test_every_tag_is_its_rows_pretrained_config():
  cfgs = registry.pretrained_cfgs()
  assert [cfg.tag for cfg in cfgs] == list(weights.TAGS)
  for cfg in cfgs:
    tag = weights.TAGS[cfg.tag]
    assert (tag.model, tag.source, tag.top1, tag.crop, tag.resize) == (
        cfg.model, cfg.source, cfg.top1, cfg.crop, cfg.resize)
    assert (tag.mean, tag.std) == tags.NORMALIZATIONS[cfg.normalization]
    assert tag.fetch.endswith(cfg.file) and tag.licence == tags.LICENCES[cfg.licence]
  bit_npz = weights.get_tag('bit_resnet50x1.bit_m_in21k_ft_in1k')
  assert bit_npz.fetch == 'https://storage.googleapis.com/bit_models/BiT-M-R50x1-ILSVRC2012.npz'


def test_every_stem_fact_comes_from_its_row():
  assert set(stems.STEMS) == {'imagenet', 'deep', 'bit', 'cifar', 'basic', 'r2plus1d'}
  assert stems.SEVEN_BY_SEVEN_STEMS == ('imagenet', 'bit')
  assert stems.PADDED_STEMS == ('imagenet', 'deep', 'bit')
  for name in jr.list_models():
    info = jr.model_info(name)
    stem = stems.STEMS[info.stem]
    assert (info.family, info.input_size, info.num_frames, info.input_kind) == (
        stem.family, stem.input_size, stem.num_frames, stem.input_kind), name
  with pytest.raises(ValueError) as err:
    stems.stem_spec('basic', 'image')
  assert str(err.value) == "stem must be 'imagenet', 'deep', 'bit' or 'cifar', got 'basic'."
  with pytest.raises(ValueError) as err:
    jr.create_model('r3d_18', stem='deep')
  assert str(err.value) == "r3d_18: stem must be 'basic' or 'r2plus1d', got 'deep'."


@pytest.fixture
def scratch_registry(monkeypatch):
  """The registry's tables as copies, so rows registered by a test leave with it."""
  for table in ('_REGISTRY', '_SOURCES', '_PRETRAINED'):
    monkeypatch.setattr(registry, table, dict(getattr(registry, table)))


def test_a_new_row_with_sources_and_weights_reaches_lookups_tags_and_layouts(scratch_registry):
  name = 'resnet18_new_family'
  registry._register(name, ResNet, block='basic', stage_sizes=(2, 2, 2, 2))
  registry._sources(name, torchvision='resnet18_new', timm='resnet18_new')
  registry._timm_weights(name, 'x1_in1k', 70.5, 224, 0.875)
  assert registry.model_for_source('timm', 'resnet18_new') == name
  assert registry.models_with_source('timm')[-1] == name
  info = jr.model_info(name)
  assert (info.tags, info.stem, info.min_input_size) == (('resnet18_new.x1_in1k',), 'imagenet',
                                                         32)
  tag = tags.tag_of(registry.pretrained_cfgs(name)[0])
  assert (tag.model, tag.fetch, tag.resize, tag.interpolation) == (
      name, 'hf-hub:timm/resnet18_new.x1_in1k', 256, 'bicubic')
  # The converters read the new row as they read resnet18's: no name table to extend.
  assert timm.timm_layout(name, 10) == timm.timm_layout('resnet18', 10)
  assert torchvision.torch_layout(name, 10) == torchvision.torch_layout('resnet18', 10)
  with pytest.raises(ValueError) as err:
    registry._timm_weights(name, 'x1_in1k', 70.5, 224, 0.875)
  assert str(err.value) == "weight tag 'resnet18_new.x1_in1k' is listed twice."


def test_registering_twice_or_weights_without_sources_raises(scratch_registry):
  with pytest.raises(ValueError) as err:
    registry._register('resnet50', ResNet, block='bottleneck', stage_sizes=(3, 4, 6, 3))
  assert str(err.value) == "model 'resnet50' is registered twice."
  with pytest.raises(ValueError) as err:
    registry._sources('resnet50', timm='resnet50')
  assert str(err.value) == ("sources of 'resnet50': the model must be registered, listed once, "
                            "with kinds among ('torchvision', 'timm', 'bit', 'transformers', "
                            "'flax_imagenet').")
  with pytest.raises(ValueError) as err:
    registry._pretrained('resnet20', 'x_in1k', 'timm', file='f', licence='timm', top1=1.0,
                         crop=32, resize=32)
  assert str(err.value) == ("weights of 'resnet20': the model needs its sources row, and the "
                            "source must be one of ('torchvision', 'timm', 'big_vision').")
