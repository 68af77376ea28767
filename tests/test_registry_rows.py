"""The registry rows own each family's facts: the converter lists, `model_info` (stem facts and
weight tags) and the tags' models are what the rows say, and a new row with sources and
published weights reaches them with no edit elsewhere."""

import pathlib
import re
import textwrap

import jax
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import published, registry, stems, weights
from jax_resnet.models import ResNet
from jax_resnet.weights import (big_vision, flax_imagenet, timm, torchvision, transformers,
                                trees)
from jax_resnet.weights.torch_layout import variable_shapes


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


def test_every_tag_is_one_published_record():
  records = published.published_weights()
  assert [tag.name for tag in records] == list(weights.TAGS) and len(weights.TAGS) == 49
  for tag in records:
    assert weights.TAGS[tag.name] is tag and isinstance(tag, weights.WeightTag)
    assert (tag.mean, tag.std) in published.NORMALIZATIONS.values()
    assert tag.licence in published.LICENCES.values()
    assert tag.preprocessing() == dict(resize=tag.resize, crop=tag.crop,
                                       interpolation=tag.interpolation, mean=tag.mean,
                                       std=tag.std)
    assert tag.eval_transform()['eval_crop_fraction'] == tag.crop / tag.resize
  bit_npz = weights.get_tag('bit_resnet50x1.bit_m_in21k_ft_in1k')
  assert bit_npz.fetch == 'https://storage.googleapis.com/bit_models/BiT-M-R50x1-ILSVRC2012.npz'
  assert (bit_npz.file, bit_npz.sha256) == ('BiT-M-R50x1-ILSVRC2012.npz', None)
  tv2 = weights.get_tag('resnet50.tv2_in1k')
  assert (tv2.file, tv2.sha256, tv2.mean) == ('resnet50-11ad3fa6.pth', '11ad3fa6',
                                              published.IMAGENET_MEAN)
  assert weights.get_tag('resnet50.a1_in1k').file == 'timm/resnet50.a1_in1k'


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
  """The registry's tables as copies, so rows a test adds with `register_model` leave with
  it."""
  for module, table in ((registry, '_REGISTRY'), (registry, '_SOURCES'),
                        (published, '_PUBLISHED')):
    monkeypatch.setattr(module, table, dict(getattr(module, table)))
  yield
  for cached in (variable_shapes, timm.timm_layout, torchvision.torch_layout,
                 transformers.transformers_layout, big_vision.big_vision_layout,
                 jr.feature_info):  # nothing of the test's rows stays behind
    cached.cache_clear()


def _record(name, model, **facts):
  return weights.WeightTag(name, model, 'timm', f'hf-hub:lab/{name}', 'MIT', 70.5, crop=224,
                           resize=256, interpolation='bicubic', **facts)


def test_a_new_row_with_sources_and_weights_reaches_lookups_tags_and_layouts(scratch_registry):
  name = 'resnet18_new_family'
  jr.register_model(name, ResNet, block='basic', stage_sizes=(2, 2, 2, 2),
                    sources={'torchvision': 'resnet18_new', 'timm': 'resnet18_new'},
                    weights=[_record('resnet18_new.x1_in1k', name)])
  assert registry.model_for_source('timm', 'resnet18_new') == name
  assert registry.models_with_source('timm')[-1] == name
  info = jr.model_info(name)
  assert (info.tags, info.stem, info.min_input_size) == (('resnet18_new.x1_in1k',), 'imagenet',
                                                         32)
  tag = weights.default_tag(name)
  assert (tag.model, tag.fetch, tag.resize, tag.interpolation) == (
      name, 'hf-hub:lab/resnet18_new.x1_in1k', 256, 'bicubic')
  assert weights.TAGS['resnet18_new.x1_in1k'] is tag and len(weights.TAGS) == 50
  # The converters read the new row as they read resnet18's: no name table to extend.
  assert timm.timm_layout(name, 10) == timm.timm_layout('resnet18', 10)
  assert torchvision.torch_layout(name, 10) == torchvision.torch_layout('resnet18', 10)


def test_registering_refuses_duplicates_and_bad_rows_and_adds_nothing(scratch_registry):
  before = (jr.list_models(), weights.list_tags())
  with pytest.raises(ValueError) as err:
    jr.register_model('resnet50', ResNet, block='bottleneck', stage_sizes=(3, 4, 6, 3))
  assert str(err.value) == ("model 'resnet50' is registered twice; register_model takes a name "
                            'not in jax_resnet.list_models().')
  with pytest.raises(ValueError) as err:
    jr.register_model('new_a', block='basic', stage_sizes=(1, 1), sources={'tf': 'x'})
  assert str(err.value) == ("sources of 'new_a': the model must be registered, listed once, "
                            "with kinds among ('torchvision', 'timm', 'bit', 'transformers', "
                            "'flax_imagenet'), each naming its counterpart.")
  with pytest.raises(TypeError, match=r"create_model\('new_b'\) got unknown option\(s\) "
                     r'blocks; valid options: '):
    jr.register_model('new_b', blocks='basic')
  with pytest.raises(ValueError) as err:
    jr.register_model('new_c', block='basic', stage_sizes=(1, 1),
                      weights=[_record('resnet50.a1_in1k', 'new_c')])
  assert str(err.value) == "weight tag 'resnet50.a1_in1k' is listed twice."
  with pytest.raises(ValueError) as err:
    jr.register_model('new_d', block='basic', stage_sizes=(1, 1),
                      weights=[_record('other.x_in1k', 'other')])
  assert str(err.value) == "weight tag 'other.x_in1k' is for 'other', not 'new_d'."
  with pytest.raises(ValueError) as err:
    jr.register_model('new_f', block='basic', stage_sizes=(1, 1),
                      sources={'torchvision': 'new_f'}, weights=[_record('new_f.x_in1k', 'new_f')])
  assert str(err.value) == ("weight tag 'new_f.x_in1k' is published by timm, whose layout needs "
                            "sources={'timm': ...} in the row of 'new_f'.")
  with pytest.raises(ValueError) as err:
    jr.register_model('new_e', block='basic', stage_sizes=(1, 1), shortcut='D')
  assert str(err.value).startswith('new_e: shortcut must be one of ')
  assert (jr.list_models(), weights.list_tags()) == before


def _random_tree(name, num_classes, seed=0):
  """Random numpy variables of registered model `name` (shapes traced, nothing compiled)."""
  rng = np.random.RandomState(seed)
  shapes = variable_shapes(name, num_classes)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def _assert_same(a, b):
  flat_a, flat_b = trees.flatten(a), trees.flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for key, value in flat_a.items():
    np.testing.assert_array_equal(value, flat_b[key], err_msg=key)


def test_every_converter_its_row_names_serves_a_model_registered_after_import(scratch_registry):
  name, bit = 'tiny_resnet10', 'tiny_bit_resnet14x1'
  jr.register_model(name, block='basic', stage_sizes=(1, 1, 1, 1), sources={
      'torchvision': 'tiny_resnet10', 'timm': 'tiny_resnet10',
      'transformers': 'lab/resnet-10', 'flax_imagenet': 'ResNet10'})
  jr.register_model(bit, block='bottleneck', stage_sizes=(1, 1, 1, 1), preact=True,
                    stem='bit', norm='group', weight_standardization=True, sources={
                        'bit': 'BiT-M-R14x1', 'timm': 'tiny_resnetv2_14x1_bit'})
  assert name in weights.IMAGE_MODELS and name in weights.TORCHVISION_MODELS
  assert weights.TIMM_NAMES[name] == 'tiny_resnet10' and bit in weights.TIMM_NAMES
  assert name in weights.TRANSFORMERS_MODELS and name in weights.FLAX_IMAGENET_MODELS
  assert weights.BIG_VISION_MODELS[-1] == bit
  variables = _random_tree(name, 10)
  for to, back in ((weights.to_torchvision, weights.from_torchvision),
                   (weights.to_timm, weights.from_timm),
                   (weights.to_transformers, weights.from_transformers)):
    state_dict = to(name, variables)
    _assert_same(back(name, state_dict), variables)
    assert weights.guess_model(state_dict) == name
  _assert_same(weights.from_state_dict(name, weights.to_torchvision(name, variables)), variables)
  config = {'model_type': 'resnet', 'layer_type': 'basic', 'depths': [1, 1, 1, 1]}
  assert transformers.model_for_config(config) == name
  ours = trees.flatten(variables)
  example = {theirs: ours[mine] for theirs, (mine, _) in
             flax_imagenet.example_names(name, 10).items()}
  assert 'params/ResNetBlock_3/Conv_1/kernel' in example and weights.guess_model(example) == name
  _assert_same(weights.from_flax_imagenet(name, trees.unflatten(example)), variables)
  bit_variables = _random_tree(bit, 10, seed=1)
  for to, back in ((weights.to_big_vision, weights.from_big_vision),
                   (weights.to_timm, weights.from_timm)):
    arrays = to(bit, bit_variables)
    _assert_same(back(bit, arrays), bit_variables)
    assert weights.guess_model(arrays) == bit




def _extending_example() -> str:
  """The python block of docs/architecture.md's "A model family from outside the package"."""
  text = (pathlib.Path(__file__).parent.parent / 'docs' / 'architecture.md').read_text()
  section = text.split('- **A model family from outside the package**', 1)[1]
  return textwrap.dedent(re.search(r'```python\n(.*?)```', section, re.S)[1])


def test_the_extending_example_runs_and_its_tag_loads_from_a_server(scratch_registry,
                                                                     monkeypatch, tmp_path):
  pytest.importorskip('torchvision')
  from torchvision.models.resnet import BasicBlock, ResNet as TorchResNet

  from jax_resnet.weights import download
  from test_pretrained import REL_TOL, _pth, _randomise_norms, _reference, _relative_error
  from weights_server import WeightsServer
  for name in ('HF_HUB_OFFLINE', download.OFFLINE_ENV):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('NO_PROXY', '127.0.0.1')
  monkeypatch.setenv('no_proxy', '127.0.0.1')
  import torch
  torch.manual_seed(0)
  reference = _randomise_norms(TorchResNet(BasicBlock, [1, 1, 1, 1], num_classes=10), 3)
  x, expected = _reference(reference)
  namespace = {}
  with WeightsServer() as server:
    monkeypatch.setenv(download.MIRROR_ENV, server.url)
    server.files['/models/lab_resnet10.pth'] = _pth(reference)
    exec(compile(_extending_example(), 'docs/architecture.md', 'exec'), namespace)  # noqa: S102
    assert server.requests == 1
  assert _relative_error(namespace['model'], namespace['variables'], x, expected) <= REL_TOL
  assert jr.model_info('lab_resnet10').tags == ('lab_resnet10.lab_in10',)
  assert weights.guess_model(weights.to_torchvision('lab_resnet10', namespace['variables'])) \
      == 'lab_resnet10'
  with pytest.raises(ValueError) as err:
    exec(compile(_extending_example(), 'docs/architecture.md', 'exec'), {})  # noqa: S102
  assert str(err.value) == ("model 'lab_resnet10' is registered twice; register_model takes a "
                            'name not in jax_resnet.list_models().')
