"""Every preprocessing value a Hub repository records is checked before use: a bad value in a
timm config.json's pretrained_cfg or a transformers preprocessor_config.json is one
WeightsError naming the repository's file, the key and the value (before: a TypeError,
ZeroDivisionError or KeyError, a 40 GB resize, NaN probabilities with exit 0). Served by a
loopback server standing in for the Hub (HF_ENDPOINT)."""

import argparse
import copy
import json

import pytest

from jax_resnet import predict, weights
from jax_resnet.weights import hub_config, pretrained
from jax_resnet.weights.trees import WeightsError
from weights_server import WeightsServer, isolate_downloads

TIMM_CONFIG = {'architecture': 'resnet18d', 'num_classes': 1000, 'pretrained_cfg': {
    'input_size': [3, 224, 224], 'crop_pct': 0.95, 'interpolation': 'bicubic',
    'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}}
TRANSFORMERS_CONFIG = {'model_type': 'resnet', 'layer_type': 'basic', 'depths': [2, 2, 2, 2],
                       'hidden_sizes': [64, 128, 256, 512], 'embedding_size': 64,
                       'hidden_act': 'relu', 'num_channels': 3,
                       'id2label': {str(i): f'class{i}' for i in range(10)}}
PROCESSOR = {'crop_pct': 0.875, 'do_normalize': True, 'do_resize': True,
             'image_mean': [0.485, 0.456, 0.406], 'image_std': [0.229, 0.224, 0.225],
             'resample': 3, 'size': 224}
TAIL = ('; the repository records preprocessing this library cannot follow. Fix the file, or '
        'load the weights with jax_resnet.weights.load and preprocess yourself.')

# (key in pretrained_cfg, value, what the line says is wanted): the cases first.
TIMM_CASES = [
    ('input_size', 224, '[3, N, N] (three channels, a square of N pixels up to 1024)'),
    ('crop_pct', 0, 'a fraction from 0.5 to 1'),
    ('interpolation', 'nearest', "'bilinear' or 'bicubic'"),
    ('input_size', [3, 60000, 60000], 'a whole number of pixels from 1 to 1024'),
    ('std', [0, 0, 0], 'three finite numbers (R, G, B), each above 0'),
    ('mean', 'abc', 'three finite numbers (R, G, B)'),
    ('input_size', [3, 224, 288], '[3, N, N] (three channels, a square of N pixels up to 1024)'),
    ('input_size', [3, 224.0, 224.0], 'a whole number of pixels from 1 to 1024'),
    ('crop_pct', '0.9', 'a fraction from 0.5 to 1'),
    ('mean', [0.5, 0.5], 'three finite numbers (R, G, B)'),
    ('std', [0.2, float('nan'), 0.2], 'three finite numbers (R, G, B), each above 0'),
]
PROCESSOR_CASES = [
    ('size', 60000, 'a whole number of pixels from 1 to 1024'),
    ('size', {'height': 224, 'width': 300},
     'a square (height equal to width) or a shortest_edge'),
    ('crop_pct', 0, 'a fraction from 0.5 to 1'),
    ('resample', 0, 'a bilinear (2) or bicubic (3) filter'),
    ('image_std', [0, 0, 0], 'three finite numbers (R, G, B), each above 0'),
    ('image_mean', [float('inf'), 0, 0], 'three finite numbers (R, G, B)'),
    ('do_normalize', False,
     'true (this library always resizes, rescales and normalises)'),
]


def _timm_config(key, value):
  config = copy.deepcopy(TIMM_CONFIG)
  config['pretrained_cfg'][key] = value
  return config


def _processor(key, value):
  processor = dict(PROCESSOR)
  processor[key] = value
  return processor


@pytest.fixture(scope='module')
def server():
  """One loopback Hub holding a repository per bad value: owner/timm-<i>, owner/tf-<i>."""
  with WeightsServer() as hub:
    for i, (key, value, _) in enumerate(TIMM_CASES):
      hub.files[f'/owner/timm-{i}/resolve/main/config.json'] = json.dumps(
          _timm_config(key, value)).encode()
    for i, (key, value, _) in enumerate(PROCESSOR_CASES):
      hub.files[f'/owner/tf-{i}/resolve/main/config.json'] = json.dumps(
          TRANSFORMERS_CONFIG).encode()
      hub.files[f'/owner/tf-{i}/resolve/main/preprocessor_config.json'] = json.dumps(
          _processor(key, value)).encode()
    hub.files['/owner/classes/resolve/main/config.json'] = json.dumps(
        {**TIMM_CONFIG, 'num_classes': 'ten'}).encode()
    yield hub


@pytest.fixture
def hub(server, tmp_path, monkeypatch):
  isolate_downloads(monkeypatch, tmp_path)
  monkeypatch.setenv('HF_ENDPOINT', server.url)
  return server



@pytest.mark.parametrize('case', range(len(TIMM_CASES)))
def test_a_bad_timm_pretrained_cfg_value_is_one_line_naming_the_file(hub, case):
  key, value, wanted = TIMM_CASES[case]
  with pytest.raises(WeightsError) as err:
    pretrained.hub_tag(f'hf-hub:owner/timm-{case}')
  assert str(err.value) == (f'config.json of owner/timm-{case}: pretrained_cfg.{key} is '
                            f'{value!r}, not {wanted}{TAIL}')


@pytest.mark.parametrize('case', range(len(PROCESSOR_CASES)))
def test_a_bad_preprocessor_config_value_is_one_line_naming_the_file(hub, case):
  key, value, wanted = PROCESSOR_CASES[case]
  with pytest.raises(WeightsError) as err:
    pretrained.hub_tag(f'hf-hub:owner/tf-{case}')
  assert str(err.value) == (f'preprocessor_config.json of owner/tf-{case}: {key} is '
                            f'{value!r}, not {wanted}{TAIL}')


def test_predict_refuses_zero_std_with_one_line_instead_of_nan(hub):
  # On main this gave a tag whose std was (0, 0, 0): NaN probabilities and exit 0.
  key, value, _ = TIMM_CASES[4]
  args = argparse.Namespace(tag='hf-hub:owner/timm-4', weights=None, model='resnet18d',
                            resize=None)
  with pytest.raises(WeightsError, match=r"^config.json of owner/timm-4: pretrained_cfg.std is "
                     r"\[0, 0, 0\], not three finite numbers"):
    predict._transform(args, weights)


def test_num_classes_of_another_type_is_one_line(hub):
  with pytest.raises(WeightsError) as err:
    pretrained.hub_tag('hf-hub:owner/classes')
  assert str(err.value) == (f"config.json of owner/classes: num_classes is 'ten', not a whole "
                            f'number above 0{TAIL}')


def test_the_published_values_pass_unchanged():
  # timm's default eval transform and the ConvNext processor's rule, as before the checks.
  assert hub_config.timm_transform(TIMM_CONFIG['pretrained_cfg'], 'x') == dict(
      crop=224, resize=235, interpolation='bicubic', mean=(0.485, 0.456, 0.406),
      std=(0.229, 0.224, 0.225))
  assert hub_config.processor_transform(PROCESSOR, 'x') == dict(
      crop=224, resize=256, interpolation='bicubic', mean=(0.485, 0.456, 0.406),
      std=(0.229, 0.224, 0.225))
  assert hub_config.processor_transform({'size': {'shortest_edge': 384}}, 'x') == dict(
      crop=384, resize=384, interpolation='bicubic', mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
