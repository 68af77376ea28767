"""An hf-hub: repository's preprocessing is the one its files record: a transformers
repository's preprocessor_config.json, a timm repository's pretrained_cfg; `predict --tag
hf-hub:...` uses it. Served by a loopback server standing in for the Hub (HF_ENDPOINT)."""

import argparse
import json

import pytest

from jax_resnet import predict, weights
from jax_resnet.weights import download, pretrained
from weights_server import WeightsServer, isolate_downloads

# transformers' ResNetConfig of microsoft/resnet-18 (the fields model_for_config reads).
RESNET18_CONFIG = {'model_type': 'resnet', 'layer_type': 'basic', 'depths': [2, 2, 2, 2],
                   'hidden_sizes': [64, 128, 256, 512], 'embedding_size': 64,
                   'hidden_act': 'relu', 'num_channels': 3,
                   'id2label': {str(i): f'class{i}' for i in range(10)}}
# The ConvNext image processor settings microsoft/resnet-* publish.
PROCESSOR = {'crop_pct': 0.875, 'do_normalize': True, 'do_resize': True,
             'image_mean': [0.485, 0.456, 0.406], 'image_std': [0.229, 0.224, 0.225],
             'resample': 3, 'size': 224}
TIMM_CONFIG = {'architecture': 'resnet18d', 'num_classes': 1000, 'pretrained_cfg': {
    'input_size': [3, 224, 224], 'crop_pct': 0.95, 'interpolation': 'bicubic',
    'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}}


@pytest.fixture
def hub(tmp_path, monkeypatch):
  """A loopback Hub serving a transformers repository with and one without a processor
  config, and a timm repository; empty caches, downloads on."""
  isolate_downloads(monkeypatch, tmp_path)
  files = {'/microsoft/resnet-18/resolve/main/config.json': RESNET18_CONFIG,
           '/microsoft/resnet-18/resolve/main/preprocessor_config.json': PROCESSOR,
           '/owner/no-processor/resolve/main/config.json': RESNET18_CONFIG,
           '/timm/resnet18d.ra2_in1k/resolve/main/config.json': TIMM_CONFIG}
  with WeightsServer() as server:
    monkeypatch.setenv('HF_ENDPOINT', server.url)
    server.files.update({path: json.dumps(value).encode() for path, value in files.items()})
    yield server


def test_transformers_repository_preprocessing_is_its_processor_config(hub):
  tag = pretrained.hub_tag('hf-hub:microsoft/resnet-18')
  assert (tag.model, tag.source, tag.num_classes) == ('resnet18', 'transformers', 10)
  # int(224 / 0.875) = 256, then a 224 crop, bicubic (PIL's 3), the file's mean and std.
  assert (tag.resize, tag.crop, tag.interpolation, tag.mean, tag.std) == (
      256, 224, 'bicubic', (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  args = argparse.Namespace(tag='hf-hub:microsoft/resnet-18', weights=None, model='resnet18',
                            resize=None)
  assert predict._transform(args, weights) == dict(
      resize=256, crop=224, interpolation='bicubic', mean=(0.485, 0.456, 0.406),
      std=(0.229, 0.224, 0.225))
  served = hub.requests
  hub.stop()  # both files are cached now
  assert pretrained.hub_tag('hf-hub:microsoft/resnet-18') == tag and hub.requests == served


def test_repository_without_processor_config_records_no_preprocessing(hub):
  assert pretrained.hub_tag('hf-hub:owner/no-processor') is None
  args = argparse.Namespace(tag='hf-hub:owner/no-processor', weights=None, model='resnet18',
                            resize=None)
  assert predict._transform(args, weights) == dict(resize=256, crop=224)  # torchvision V1's
  with pytest.raises(download.DownloadError) as err:  # a required file still fails loudly
    download.fetch_hub('owner/no-processor', 'model.safetensors')
  message = str(err.value)
  assert message.startswith('cannot download model.safetensors of owner/no-processor from '
                            f'{hub.url}: ') and 'EntryNotFoundError' in message


def test_timm_repository_preprocessing_is_its_pretrained_cfg(hub):
  tag = pretrained.hub_tag('hf-hub:timm/resnet18d.ra2_in1k')
  # floor(224 / 0.95) = 235: timm's default eval transform for the repository's input size.
  assert (tag.model, tag.source, tag.resize, tag.crop, tag.interpolation, tag.mean) == (
      'resnet18d', 'timm', 235, 224, 'bicubic', (0.485, 0.456, 0.406))
