"""ResNet-D, ResNetV2 and BiT against timm (the reference): the same weights give the same
logits, and `jax_resnet.weights.timm` converts both ways exactly."""

import numpy as np
import pytest

import compiled
import jax_resnet as jr
from jax_resnet.weights import WeightsMismatchError
from jax_resnet.weights import timm as timm_weights

timm = pytest.importorskip('timm')
torch = pytest.importorskip('torch')

# Odd feature maps from stage 2 on (72 -> 36 -> 18 -> 9 -> 5 -> 3): ResNet-D's ceil-mode
# average pool meets partial windows, BiT's zero-padded max pool an odd side.
SIDE = 72
TOLERANCE = 1e-4  # max |ours - timm| / max |timm| over the logits, float32 (docs/testing.md)


def _randomize(model, seed):
  """Norm scales, biases and running statistics drawn away from their init values, so the
  comparison sees every one of them used in the right place."""
  generator = torch.Generator().manual_seed(seed)
  rand = lambda shape: torch.rand(shape, generator=generator)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
        shape = module.weight.shape
        module.weight.copy_(0.5 + rand(shape))
        module.bias.copy_(rand(shape) - 0.5)
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.copy_(rand(shape) - 0.5)
        module.running_var.copy_(0.5 + rand(shape))
  return model.eval()


def _timm_model(name, seed=0):
  torch.manual_seed(seed)
  return _randomize(timm.create_model(name, pretrained=False), seed)


def _compare(timm_name, batch=2):
  model = _timm_model(timm_name)
  x = np.random.default_rng(0).standard_normal((batch, SIDE, SIDE, 3)).astype(np.float32)
  with torch.no_grad():
    expected = model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  variables = timm_weights.from_timm(timm_name, model.state_dict())
  ours = jr.create_model(timm_weights.resolve(timm_name))
  logits = np.asarray(compiled.apply(ours, variables, x, train=False))
  assert logits.shape == expected.shape == (batch, 1000)
  return float(np.max(np.abs(logits - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize('timm_name', ['resnet18d', 'resnet26d', 'resnetv2_50x1_bit',
                                       'resnetv2_50'])
def test_logits_equal_timm_with_converted_weights(timm_name):
  assert _compare(timm_name) <= TOLERANCE


def test_round_trip_through_timm_is_exact():
  model = _timm_model('resnet26d', seed=1)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = timm_weights.from_timm('resnet26d', state)
  back = timm_weights.to_timm('resnet26d', variables)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
  assert set(back) == set(state)
  for name, value in state.items():
    np.testing.assert_array_equal(back[name], value)


def test_bit_head_is_a_1x1_convolution_in_timm_and_a_dense_here():
  model = _timm_model('resnetv2_50x1_bit')
  state = model.state_dict()
  assert tuple(state['head.fc.weight'].shape) == (1000, 2048, 1, 1)
  variables = timm_weights.from_timm('resnetv2_50x1_bit.goog_in21k_ft_in1k', state)
  assert 'batch_stats' not in variables  # GroupNorm: no running statistics
  np.testing.assert_array_equal(variables['params']['head']['kernel'],
                                state['head.fc.weight'][:, :, 0, 0].numpy().T)
  back = timm_weights.to_timm('bit_resnet50x1', variables)
  np.testing.assert_array_equal(back['head.fc.weight'], state['head.fc.weight'].numpy())


# One of each layout; the slow test below checks every mapped model.
LAYOUT_SAMPLE = ('resnet26', 'resnet18d', 'resnet50d', 'resnext50_32x4d', 'preact_resnet50',
                 'bit_resnet50x1')


def _check_layout(ours):
  """Names and shapes equal timm's own state dict (built on the meta device: no memory)."""
  with torch.device('meta'):
    model = timm.create_model(timm_weights.TIMM_NAMES[ours], pretrained=False)
  expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  layout = {e.torch_name: tuple(e.torch_shape) for e in timm_weights.timm_layout(ours, 1000)}
  assert layout == expected


@pytest.mark.parametrize('ours', LAYOUT_SAMPLE)
def test_timm_layout_is_timms_state_dict(ours):
  _check_layout(ours)


@pytest.mark.slow
@pytest.mark.parametrize('ours', sorted(set(timm_weights.TIMM_NAMES) - set(LAYOUT_SAMPLE)))
def test_every_timm_layout_is_timms_state_dict(ours):
  _check_layout(ours)


def test_names_resolve_and_mismatches_are_one_message():
  assert timm_weights.resolve('resnetv2_152x4_bit') == 'bit_resnet152x4'
  assert timm_weights.resolve('resnetv2_50.a1h_in1k') == 'preact_resnet50'
  assert timm_weights.resolve('resnet50d') == 'resnet50d'
  assert timm_weights.timm_layout('resnet18d', 10)[0].torch_name == 'conv1.0.weight'
  state = {e.torch_name: np.zeros(e.torch_shape, np.float32)
           for e in timm_weights.timm_layout('resnet18d', 10) if e.kind != 'counter'}
  del state['conv1.6.weight']
  with pytest.raises(WeightsMismatchError, match=r'missing 1: conv1\.6\.weight \(64, 32, 3, 3\)'):
    timm_weights.from_timm('resnet18d', state)


def _flat_equal(a, b):
  from jax_resnet.weights.trees import flatten
  a, b = flatten(a), flatten(b)
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize('timm_name, ours', [('resnet26d', 'resnet26d'),
                                             ('resnetv2_50', 'preact_resnet50')])
def test_weights_load_reads_timm_files_with_the_timm_converter(tmp_path, timm_name, ours):
  from safetensors.torch import save_file
  from jax_resnet import weights
  state = _timm_model(timm_name).state_dict()
  expected = timm_weights.from_timm(timm_name, state)
  save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / 'm.safetensors'))
  torch.save(state, tmp_path / 'm.pth')
  _flat_equal(weights.load(ours, tmp_path / 'm.safetensors'), expected)
  _flat_equal(weights.load(ours, tmp_path / 'm.pth'), expected)


def test_a_timm_file_for_another_model_names_the_model_it_holds(tmp_path):
  from jax_resnet import weights
  torch.save(_timm_model('resnet26d').state_dict(), tmp_path / 'm.pth')
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet50d', tmp_path / 'm.pth')
  message = str(err.value)
  assert message.startswith(f'{tmp_path / "m.pth"} does not match timm resnet50d (')
  assert 'missing' in message and message.endswith(' The file holds resnet26d weights.')
