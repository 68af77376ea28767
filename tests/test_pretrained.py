"""load_pretrained: published weights fetched, verified, cached and loaded, one source at a
time (torchvision, timm, BiT, transformers), against a loopback server that stands in for the
Hub (HF_ENDPOINT) and the download hosts (JAX_RESNET_MIRROR). Every file is generated from a
random reference model, whose logits the loaded weights must give."""

import dataclasses
import hashlib
import io
import json
import logging
import os

import numpy as np
import pytest

import jax_resnet
from jax_resnet import export, predict, registry, weights
from jax_resnet.models import ResNet
from jax_resnet.weights import download
from jax_resnet.weights.pretrained import load_pretrained
from weights_server import WeightsServer, files_under, isolate_downloads, point_hosts_at

torch = pytest.importorskip('torch')
safetensors_torch = pytest.importorskip('safetensors.torch')
SIZE = 64  # small inputs: the comparison is of the weights, not of the resolution
REL_TOL = 1e-4


@pytest.fixture
def env(tmp_path, monkeypatch):
  """Empty caches, downloads on; every host pointed at the server set later by `serve`."""
  return isolate_downloads(monkeypatch, tmp_path)


def serve(env, server):
  point_hosts_at(env, server.url)


def _randomise_norms(model, seed):
  """Non-trivial BatchNorm statistics and affine terms, so the test sees each of them."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        for tensor, low, high in ((module.running_mean, -0.2, 0.2),
                                  (module.running_var, 0.5, 1.5), (module.weight, 0.5, 1.5),
                                  (module.bias, -0.2, 0.2)):
          tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
  return model.eval()


def _reference(model, seed=0):
  """(input NHWC float32, the torch model's logits as numpy)."""
  x = np.random.RandomState(seed).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
  with torch.no_grad():
    out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  return x, np.asarray(getattr(out, 'logits', out))


def _relative_error(model, variables, x, expected):
  logits = np.asarray(model.apply(variables, x, train=False))
  return float(np.max(np.abs(logits - expected)) / np.max(np.abs(expected)))


def _safetensors(model) -> bytes:
  return safetensors_torch.save({k: v.contiguous() for k, v in model.state_dict().items()})


def _pth(model) -> bytes:
  buffer = io.BytesIO()
  torch.save(model.state_dict(), buffer)
  return buffer.getvalue()




@pytest.fixture(scope='module')
def timm_resnet18d():
  timm = pytest.importorskip('timm')
  torch.manual_seed(0)
  model = _randomise_norms(timm.create_model('resnet18d', num_classes=10), 1)
  return _safetensors(model), *_reference(model)


TIMM_PATH = '/timm/resnet18d.ra2_in1k/resolve/main/model.safetensors'


def test_timm_tag_loads_then_comes_from_the_cache(env, timm_resnet18d, caplog):
  data, x, expected = timm_resnet18d
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = data
    model, variables = load_pretrained('resnet18d.ra2_in1k')
    assert _relative_error(model, variables, x, expected) <= REL_TOL
    served = server.requests
  assert served >= 1
  # Server stopped: the cache answers, no request is made.
  model, again = load_pretrained('resnet18d.ra2_in1k')
  assert server.requests == served
  np.testing.assert_array_equal(again['params']['head']['kernel'],
                                variables['params']['head']['kernel'])
  # Another num_classes: the body as published, a fresh head, one log line.
  with caplog.at_level(logging.WARNING, logger='jax_resnet'):
    model, fresh = load_pretrained('resnet18d.ra2_in1k', num_classes=3)
  assert [r.getMessage() for r in caplog.records] == [
      'resnet18d.ra2_in1k: a fresh 3-class head replaces the pretrained 10-class one.']
  assert fresh['params']['head']['kernel'].shape == (512, 3)
  np.testing.assert_array_equal(fresh['params']['conv_init1']['kernel'],
                                variables['params']['conv_init1']['kernel'])
  assert server.requests == served


def test_nnx_load_pretrained_holds_the_weights(env, timm_resnet18d):
  from flax import nnx
  data, x, expected = timm_resnet18d
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = data
    model = jax_resnet.nnx.load_pretrained('resnet18d.ra2_in1k', rngs=nnx.Rngs(0))
  model.eval()
  logits = np.asarray(model(x))
  assert float(np.max(np.abs(logits - expected)) / np.max(np.abs(expected))) <= REL_TOL


def test_hub_file_failing_its_digest_is_refused_and_not_cached(env, timm_resnet18d, tmp_path):
  data = timm_resnet18d[0]
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = data
    server.etags[TIMM_PATH] = claimed = hashlib.sha256(b'other').hexdigest()
    with pytest.raises(download.DownloadError) as err:
      load_pretrained('resnet18d.ra2_in1k')
  assert str(err.value) == (
      f'model.safetensors of timm/resnet18d.ra2_in1k: SHA-256 {hashlib.sha256(data).hexdigest()} '
      f'found, {claimed} expected; the file is corrupt or altered and was deleted. Run again.')
  assert not [f for f in files_under(tmp_path / 'hf') if 'blobs' in f]
  env.setenv(download.OFFLINE_ENV, '1')
  with pytest.raises(download.DownloadError, match='is not in the Hugging Face cache'):
    load_pretrained('resnet18d.ra2_in1k')


def test_hub_download_cut_halfway_leaves_nothing_usable(env, timm_resnet18d):
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = timm_resnet18d[0]
    server.cut.add(TIMM_PATH)
    with pytest.raises(download.DownloadError) as err:
      load_pretrained('resnet18d.ra2_in1k')
  message = str(err.value)
  assert message.startswith(f'cannot download model.safetensors of timm/resnet18d.ra2_in1k '
                            f'from {server.url}: ') and '\n' not in message
  env.setenv('HF_HUB_OFFLINE', '1')
  with pytest.raises(download.DownloadError, match='is not in the Hugging Face cache'):
    load_pretrained('resnet18d.ra2_in1k')


@pytest.fixture(scope='module')
def torchvision_resnet18():
  models = pytest.importorskip('torchvision.models')
  torch.manual_seed(0)
  model = _randomise_norms(models.resnet18(num_classes=10), 2)
  data = _pth(model)
  return data, *_reference(model)


def test_torchvision_file_is_verified_loaded_and_cached(env, torchvision_resnet18, tmp_path):
  data, x, expected = torchvision_resnet18
  prefix = hashlib.sha256(data).hexdigest()[:8]
  url = f'https://download.pytorch.org/models/resnet18-{prefix}.pth'
  tag = dataclasses.replace(weights.get_tag('resnet18.tv_in1k'), fetch=url)
  with WeightsServer() as server:
    serve(env, server)
    server.files[f'/models/resnet18-{prefix}.pth'] = data
    model, variables = load_pretrained(tag)
    assert _relative_error(model, variables, x, expected) <= REL_TOL
    assert server.requests == 1
  assert files_under(tmp_path / 'cache') == [  # the file and the record of its download
      os.path.join('download.pytorch.org', 'models', f'.resnet18-{prefix}.pth.json'),
      os.path.join('download.pytorch.org', 'models', f'resnet18-{prefix}.pth')]
  model, again = load_pretrained(tag)  # server stopped: from the cache
  assert server.requests == 1
  np.testing.assert_array_equal(again['params']['head']['bias'],
                                variables['params']['head']['bias'])


def test_torchvision_file_failing_its_digest_is_refused(env, torchvision_resnet18, tmp_path):
  data = torchvision_resnet18[0]
  with WeightsServer() as server:
    serve(env, server)
    server.files['/models/resnet18-f37072fd.pth'] = data
    with pytest.raises(download.DownloadError) as err:
      load_pretrained('resnet18.tv_in1k')
  found = hashlib.sha256(data).hexdigest()[:8]
  assert str(err.value) == (
      f'resnet18-f37072fd.pth: SHA-256 {found}... found, f37072fd... expected; the file is '
      'corrupt or altered and was deleted. Run again, or check the mirror.')
  assert files_under(tmp_path / 'cache') == []


def test_torchvision_download_cut_halfway_keeps_nothing(env, torchvision_resnet18, tmp_path):
  with WeightsServer() as server:
    serve(env, server)
    server.files['/models/resnet18-f37072fd.pth'] = data = torchvision_resnet18[0]
    server.cut.add('/models/resnet18-f37072fd.pth')
    with pytest.raises(download.DownloadError) as err:
      load_pretrained('resnet18.tv_in1k')
  assert str(err.value) == (
      f'the download of {server.url}/models/resnet18-f37072fd.pth stopped after '
      f'{len(data) // 2} of {len(data)} bytes; nothing was kept. Run again.')
  assert files_under(tmp_path / 'cache') == []


def test_offline_with_an_empty_cache_is_one_line(env, tmp_path, capsys):
  env.setenv(download.OFFLINE_ENV, '1')
  with pytest.raises(download.DownloadError) as err:
    load_pretrained('resnet18.tv_in1k')
  path = tmp_path / 'cache' / 'download.pytorch.org' / 'models' / 'resnet18-f37072fd.pth'
  assert str(err.value) == (
      'resnet18-f37072fd.pth is not in the cache and downloads are off (JAX_RESNET_OFFLINE or '
      'HF_HUB_OFFLINE); fetch https://download.pytorch.org/models/resnet18-f37072fd.pth on a '
      f'machine with network and place it at {path}.')
  image = str(tmp_path / 'img.png')
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  assert predict.main(['--tag', 'resnet18.tv_in1k', image]) == 2
  assert capsys.readouterr().err == f'predict: error: {err.value}\n'


@pytest.fixture(scope='module')
def transformers_resnet18():
  transformers = pytest.importorskip('transformers')
  torch.manual_seed(0)
  config = transformers.ResNetConfig(layer_type='basic', depths=[2, 2, 2, 2],
                                     hidden_sizes=[64, 128, 256, 512], num_labels=10)
  model = _randomise_norms(transformers.ResNetForImageClassification(config), 3)
  return _safetensors(model), json.dumps(config.to_dict()).encode(), *_reference(model)


def test_transformers_repository_loads(env, transformers_resnet18):
  data, config, x, expected = transformers_resnet18
  with WeightsServer() as server:
    serve(env, server)
    server.files['/microsoft/resnet-18/resolve/main/model.safetensors'] = data
    server.files['/microsoft/resnet-18/resolve/main/config.json'] = config
    model, variables = load_pretrained('hf-hub:microsoft/resnet-18')
    assert _relative_error(model, variables, x, expected) <= REL_TOL
    served = server.requests
  _, again = load_pretrained('hf-hub:microsoft/resnet-18')  # server stopped: the Hub cache
  assert server.requests == served
  assert model.stage_sizes == (2, 2, 2, 2) and model.block == 'basic'
  np.testing.assert_array_equal(again['params']['head']['kernel'],
                                variables['params']['head']['kernel'])


def test_transformers_round_trip_is_exact(transformers_resnet18):
  from safetensors.numpy import load as load_safetensors
  arrays = load_safetensors(transformers_resnet18[0])
  back = weights.to_transformers('resnet18', weights.from_transformers('resnet18', arrays))
  assert list(back) == list(arrays) or sorted(back) == sorted(arrays)
  for name, value in arrays.items():
    np.testing.assert_array_equal(back[name], value)


@pytest.mark.slow
def test_bit_npz_tag_loads_from_the_bucket_mirror(env):
  timm = pytest.importorskip('timm')
  torch.manual_seed(0)
  reference = timm.create_model('resnetv2_50x1_bit', num_classes=10).eval()
  x, expected = _reference(reference)
  arrays = weights.to_big_vision('bit_resnet50x1',
                                 weights.from_timm('bit_resnet50x1', reference.state_dict()))
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with WeightsServer() as server:
    serve(env, server)
    server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = buffer.getvalue()
    model, variables = load_pretrained('bit_resnet50x1.bit_m_in21k_ft_in1k')
    assert server.requests == 1
  assert _relative_error(model, variables, x, expected) <= REL_TOL
  load_pretrained('bit_resnet50x1.bit_m_in21k_ft_in1k')  # from the cache, server stopped
  assert server.requests == 1


def test_mirror_keeps_the_path_and_digest_prefix_comes_from_the_name(monkeypatch):
  monkeypatch.setenv(download.MIRROR_ENV, 'http://mirror.example/base/')
  assert download.mirrored('https://download.pytorch.org/models/r3d_18-b3b3357e.pth') == (
      'http://mirror.example/base/models/r3d_18-b3b3357e.pth')
  assert download.expected_sha256_prefix('https://h/models/r3d_18-b3b3357e.pth') == 'b3b3357e'
  assert download.expected_sha256_prefix('https://h/bit_models/BiT-M-R50x1.npz') is None


def test_every_tag_and_video_tags_resolve_to_a_file():
  kinetics = {t.model: t.fetch for t in weights.TAGS.values() if t.dataset == 'Kinetics-400'}
  assert kinetics == {m: f'https://download.pytorch.org/models/{f}' for m, f in (
      ('r3d_18', 'r3d_18-b3b3357e.pth'), ('mc3_18', 'mc3_18-a90a0ba3.pth'),
      ('r2plus1d_18', 'r2plus1d_18-91a641e6.pth'))}
  assert weights.default_tag('resnet50').name == 'resnet50.a1_in1k'
  assert all(t.fetch.startswith(('https://', 'hf-hub:timm/')) for t in weights.TAGS.values())


def test_registering_a_name_twice_raises():
  with pytest.raises(ValueError) as err:
    jax_resnet.register_model('resnet18', ResNet, block='basic', stage_sizes=(2, 2, 2, 2))
  assert str(err.value) == ("model 'resnet18' is registered twice; register_model takes a name "
                            'not in jax_resnet.list_models().')


def test_trainer_init_from_a_tag_sets_init_tag_and_loads_it(env, timm_resnet18d):
  import jax
  from flax import struct

  from jax_resnet.config import resolve
  from jax_resnet.errors import ConfigError
  from jax_resnet.training import loop as training_loop
  config = jax_resnet.load_config('finetune_cifar10_resnet50')
  config.model, config.init_from = 'preact_resnet50', 'resnetv2_50.a1h_in1k'
  config.init_tag = ''  # the recipe's own tag off: init_from's is the default
  data = resolve(config).data
  assert (data.mean, data.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
  config.model = 'resnet50'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == (
      "Invalid config: init_from='resnetv2_50.a1h_in1k' is a preact_resnet50 checkpoint but "
      "model='resnet50'; use a tag of resnet50 (jax_resnet.weights.list_tags('resnet50')).")

  @struct.dataclass
  class State:
    params: dict
    batch_stats: dict
    ema_params: dict = None

  model = jax_resnet.create_model('resnet18d', num_classes=3)
  fresh = jax.jit(lambda k: model.init(k, np.zeros((1, 32, 32, 3), np.float32)))(
      jax.random.key(0))
  spec = type('Spec', (), {'model': 'resnet18d', 'loop': type('Loop', (), {
      'init_from': 'resnet18d.ra2_in1k', 'init_reinit_head': True})})
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = timm_resnet18d[0]
    state = training_loop._load_pretrained(spec, model, State(fresh['params'],
                                                              fresh['batch_stats']))
  _, published = load_pretrained('resnet18d.ra2_in1k')  # from the cache
  np.testing.assert_array_equal(state.params['conv_init1']['kernel'],
                                published['params']['conv_init1']['kernel'])
  np.testing.assert_array_equal(state.params['head']['kernel'], fresh['params']['head']['kernel'])


def test_registry_rows_carry_the_sources_the_converters_and_tags_use():
  assert registry.model_sources('resnet50') == {
      'torchvision': 'resnet50', 'timm': 'resnet50', 'transformers': 'microsoft/resnet-50',
      'flax_imagenet': 'ResNet50'}
  assert registry.model_for_source('timm', 'resnetv2_50') == 'preact_resnet50'
  assert weights.TRANSFORMERS_MODELS == registry.models_with_source('transformers')
  assert set(weights.TIMM_NAMES) == set(registry.models_with_source('timm'))
  kinds = {'torchvision': 'torchvision', 'timm': 'timm', 'big_vision': 'bit'}
  for tag in weights.TAGS.values():
    assert kinds[tag.source] in registry.model_sources(tag.model), tag.name


@pytest.mark.slow  # 30 s: two predicts at 224 px; export's tag route (below) stays default
def test_predict_with_a_tag_and_no_weights_file(env, timm_resnet18d, tmp_path, capsys):
  from PIL import Image
  image = str(tmp_path / 'img.png')
  Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 50, 3), np.uint8)).save(image)
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = timm_resnet18d[0]
    assert predict.main(['--tag', 'resnet18d.ra2_in1k', '--top', '3', image]) == 0
  by_tag = capsys.readouterr().out
  cached = download.fetch_hub('timm/resnet18d.ra2_in1k', 'model.safetensors')  # server stopped
  assert predict.main(['--model', 'resnet18d', '--weights', cached, '--tag',
                       'resnet18d.ra2_in1k', '--top', '3', image]) == 0
  assert capsys.readouterr().out == by_tag and len(by_tag.splitlines()) == 4


def test_export_with_a_tag_and_no_weights_file(env, timm_resnet18d, tmp_path):
  import jax
  import jax.export  # noqa: F401  (jax 0.7.2 loads the submodule only when asked)
  out = tmp_path / 'resnet18d.jaxexport'
  with WeightsServer() as server:
    serve(env, server)
    server.files[TIMM_PATH] = timm_resnet18d[0]
    assert export.main(['--tag', 'resnet18d.ra2_in1k', '--image-size', str(SIZE),
                        '--out', str(out)]) == 0
  model, variables = load_pretrained('resnet18d.ra2_in1k')  # the cache: server stopped
  program = jax.export.deserialize(bytearray(out.read_bytes()))
  x = timm_resnet18d[1]
  expected = np.asarray(model.apply(variables, x, train=False))
  got = np.asarray(program.call(x))
  assert np.max(np.abs(got - expected)) <= 1e-5 * np.max(np.abs(expected))
