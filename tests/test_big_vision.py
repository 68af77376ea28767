"""BiT's original .npz checkpoints (jax_resnet.weights.big_vision) against timm's own reader of
them, `timm.models.resnetv2._load_weights`: a file written in the published naming from a timm
model's weights loads into a fresh timm model and into ours with the same logits."""

import re

import numpy as np
import pytest

import compiled
import jax_resnet as jr
from jax_resnet.weights import WeightsError, WeightsMismatchError, guess_model, head_classes
from jax_resnet.weights import big_vision as bv
from jax_resnet.weights.npz import npz_headers
from jax_resnet.weights.timm import from_timm

timm = pytest.importorskip('timm')
torch = pytest.importorskip('torch')
from timm.models.resnetv2 import _load_weights  # noqa: E402

NUM_CLASSES = 10
SIDE = 64
TOLERANCE = 1e-4  # max |ours - timm| / max |timm| over the logits, float32 (docs/testing.md)
# bit_resnet50x1: the root conv, 16 units of 3 norms (gamma, beta) and 3 convs, 4 projections,
# the final norm (2) and the head (2).
SIZE_50X1 = 1 + 16 * 9 + 4 + 2 + 2


def _timm_model(seed, num_classes=NUM_CLASSES):
  torch.manual_seed(seed)
  model = timm.create_model('resnetv2_50x1_bit', pretrained=False, num_classes=num_classes)
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():  # GroupNorm scales and shifts away from 1 and 0
    for module in model.modules():
      if isinstance(module, torch.nn.GroupNorm):
        module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
        module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
      if isinstance(module, torch.nn.Conv2d) and module.bias is not None:  # the head
        module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
  return model.eval()


def _hwio(weight):
  return np.ascontiguousarray(weight.numpy().transpose(2, 3, 1, 0))  # OIHW -> HWIO


def _timm_to_npz_names(state_dict):
  """The inverse of timm's `_load_weights`, written from its source independently of the module
  under test: timm state dict -> published BiT names, HWIO kernels."""
  out = {}
  for name, value in state_dict.items():
    value = value.detach()
    if name == 'stem.conv.weight':
      out['resnet/root_block/standardized_conv2d/kernel'] = _hwio(value)
    elif name in ('norm.weight', 'norm.bias'):
      out['resnet/group_norm/' + ('gamma' if name.endswith('weight') else 'beta')] = value.numpy()
    elif name == 'head.fc.weight':
      out['resnet/head/conv2d/kernel'] = _hwio(value)
    elif name == 'head.fc.bias':
      out['resnet/head/conv2d/bias'] = value.numpy()
    else:
      m = re.fullmatch(r'stages\.(\d)\.blocks\.(\d+)\.(conv[123]|norm[123]|downsample\.conv)'
                       r'\.(weight|bias)', name)
      assert m, f'no BiT name for timm {name}'
      unit = f'resnet/block{int(m[1]) + 1}/unit{int(m[2]) + 1:02d}/'
      if m[3] == 'downsample.conv':
        out[unit + 'a/proj/standardized_conv2d/kernel'] = _hwio(value)
      elif m[3].startswith('conv'):
        out[unit + 'abc'[int(m[3][-1]) - 1] + '/standardized_conv2d/kernel'] = _hwio(value)
      else:
        leaf = 'gamma' if m[4] == 'weight' else 'beta'
        out[unit + 'abc'[int(m[3][-1]) - 1] + '/group_norm/' + leaf] = value.numpy()
  assert len(out) == len(state_dict)
  return out


@pytest.fixture(scope='module')
def published(tmp_path_factory):
  """(path of the .npz, its arrays, the timm model whose weights it holds)."""
  model = _timm_model(seed=0)
  arrays = _timm_to_npz_names(model.state_dict())
  path = tmp_path_factory.mktemp('bit') / 'BiT-M-R50x1-test.npz'
  np.savez(path, **arrays)
  return path, arrays, model


def _shapes(model_name, num_classes=NUM_CLASSES):
  """A checkpoint of `model_name`'s names and shapes, of zero-stride views (no memory)."""
  return {name: np.broadcast_to(np.float32(0), shape)
          for name, _, shape in bv.big_vision_layout(model_name, num_classes)}


def test_timm_loader_and_ours_read_the_file_to_the_same_logits(published):
  path, arrays, reference = published
  assert len(arrays) == SIZE_50X1
  fresh = _timm_model(seed=1)
  with torch.no_grad():
    _load_weights(fresh, str(path))  # timm's own reader of BiT checkpoints
  expected_state = reference.state_dict()
  for name, value in fresh.state_dict().items():  # the test-side naming is timm's
    np.testing.assert_array_equal(value.numpy(), expected_state[name].numpy(), err_msg=name)

  with np.load(path) as data:
    variables = bv.from_big_vision('bit_resnet50x1', data, source=str(path))
  assert list(variables) == ['params']
  assert variables['params']['head']['kernel'].shape == (2048, NUM_CLASSES)
  # Same tree, bit for bit, as the timm state dict converted by the timm module.
  via_timm = jr.weights.trees.flatten(from_timm('bit_resnet50x1', expected_state))
  ours = jr.weights.trees.flatten(variables)
  assert list(ours) == list(via_timm) and len(ours) == SIZE_50X1
  for name, value in ours.items():
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, via_timm[name], err_msg=name)

  x = np.random.default_rng(0).standard_normal((2, SIDE, SIDE, 3)).astype(np.float32)
  with torch.no_grad():
    logits_timm = fresh(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  model = jr.create_model('bit_resnet50x1', num_classes=NUM_CLASSES)
  logits = np.asarray(compiled.apply(model, variables, x, train=False))
  assert logits.shape == logits_timm.shape == (2, NUM_CLASSES)
  error = float(np.max(np.abs(logits - logits_timm)) / np.max(np.abs(logits_timm)))
  print(f'bit_resnet50x1 .npz vs timm _load_weights: max relative logit error {error:.2e}')
  assert error <= TOLERANCE


def test_round_trip_is_exact(published):
  _, arrays, _ = published
  back = bv.to_big_vision('bit_resnet50x1', bv.from_big_vision('bit_resnet50x1', arrays))
  assert list(back) == [name for name, _, _ in bv.big_vision_layout('bit_resnet50x1', 10)]
  assert set(back) == set(arrays)
  for name, value in arrays.items():
    assert back[name].dtype == np.float32 and back[name].shape == value.shape
    np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_headers_are_checked_before_reading_and_the_format_is_recognised(published):
  path, arrays, _ = published
  headers = npz_headers(str(path))
  assert bv.looks_like_big_vision(headers)
  assert not bv.looks_like_big_vision(['params/conv_init/kernel', 'conv1.weight'])
  assert bv.check_big_vision('bit_resnet50x1', headers, source=str(path)) == NUM_CLASSES
  assert guess_model(headers) == 'bit_resnet50x1'


def test_a_file_of_another_depth_or_width_is_one_error_naming_it():
  deeper = _shapes('bit_resnet101x1')
  assert guess_model(deeper) == 'bit_resnet101x1'
  with pytest.raises(WeightsMismatchError) as info:
    bv.from_big_vision('bit_resnet50x1', deeper, source='R101x1.npz')
  message = str(info.value)
  assert message.startswith('R101x1.npz does not match BiT bit_resnet50x1 (153 arrays): '
                            'unexpected 153: resnet/block3/unit07/a/group_norm/gamma (1024,), ')
  assert 'missing' not in message and 'wrong shape' not in message
  assert message.endswith('The file holds bit_resnet101x1 weights.')

  wider = _shapes('bit_resnet50x3')
  assert guess_model(wider) == 'bit_resnet50x3'
  with pytest.raises(WeightsMismatchError) as info:
    bv.from_big_vision('bit_resnet50x1', wider)
  message = str(info.value)
  # Every array but the head's bias (10 classes in both) has the wrong shape.
  assert message.startswith('npz does not match BiT bit_resnet50x1 (153 arrays): wrong shape '
                            '152: resnet/root_block/standardized_conv2d/kernel (7, 7, 3, 192) '
                            '(model expects (7, 7, 3, 64)), ')
  assert message.endswith('The file holds bit_resnet50x3 weights.')


def test_broken_and_unknown_files_are_one_error():
  arrays = dict(_shapes('bit_resnet50x1'))
  del arrays['resnet/block2/unit01/a/proj/standardized_conv2d/kernel']
  arrays['resnet/block2/unit01/b/standardized_conv2d/kernel'] = np.zeros((3, 3, 128, 64))
  with pytest.raises(WeightsMismatchError) as info:
    bv.from_big_vision('bit_resnet50x1', arrays)
  assert str(info.value) == (
      'npz does not match BiT bit_resnet50x1 (153 arrays): missing 1: '
      'resnet/block2/unit01/a/proj/standardized_conv2d/kernel (1, 1, 256, 512); wrong shape 1: '
      'resnet/block2/unit01/b/standardized_conv2d/kernel (3, 3, 128, 64) (model expects '
      '(3, 3, 128, 128)). Check the model name, num_classes (None reads it from the head, 0 '
      'loads a backbone) and that the file is a BiT checkpoint (resnet/root_block/...).')
  # Units (2, 2, 2, 2): a BiT net that is no registered model.
  odd = {n: v for n, v in _shapes('bit_resnet50x1').items()
         if not (m := re.match(r'resnet/block\d/unit(\d+)/', n)) or int(m[1]) <= 2}
  assert guess_model(odd) is None
  with pytest.raises(WeightsMismatchError, match=r'The file holds a BiT ResNet \(units per '
                     r'block \(2, 2, 2, 2\), width x1\) that no registered model matches\.$'):
    bv.from_big_vision('bit_resnet50x1', odd)
  with pytest.raises(WeightsError, match='resnet50 has no BiT .npz counterpart; BiT checkpoints '
                     'exist for bit_resnet50x1, bit_resnet50x3, '):
    bv.from_big_vision('resnet50', arrays)
  assert sorted(bv.BIG_VISION_MODELS) == jr.list_models('bit_resnet*')


def test_a_headless_file_loads_as_a_backbone(published):
  path, arrays, _ = published
  backbone = {n: v for n, v in arrays.items() if not n.startswith('resnet/head/')}
  assert len(backbone) == SIZE_50X1 - 2 and head_classes(backbone) == 0
  for num_classes in (None, 0):
    variables = bv.from_big_vision('bit_resnet50x1', backbone, num_classes)
    assert 'head' not in variables['params'] and len(variables['params']) == 1 + 16 + 1
  back = bv.to_big_vision('bit_resnet50x1', variables)
  assert set(back) == set(backbone)
  # timm's reader takes the same file into a model without head.
  headless_path = path.with_name('BiT-S-R50x1-test.npz')
  np.savez(headless_path, **backbone)
  model = _timm_model(seed=2, num_classes=0)
  with torch.no_grad():
    _load_weights(model, str(headless_path))
  np.testing.assert_array_equal(model.norm.weight.detach().numpy(),
                                variables['params']['final_bn']['scale'])
  with pytest.raises(WeightsMismatchError, match=r'missing 2: resnet/head/conv2d/kernel '
                     r'\(1, 1, 2048, 10\), resnet/head/conv2d/bias \(10,\)'):
    bv.from_big_vision('bit_resnet50x1', backbone, num_classes=10)


def test_weights_load_recognises_a_bit_file_and_refuses_it_for_another_family(published):
  from jax_resnet import weights
  path, arrays, _ = published
  expected = bv.from_big_vision('bit_resnet50x1', arrays)
  loaded = weights.load('bit_resnet50x1', path)
  assert loaded.keys() == {'params'}
  for (name, a), (other, b) in zip(sorted(weights.trees.flatten(loaded).items()),
                                   sorted(weights.trees.flatten(expected).items())):
    assert name == other
    np.testing.assert_array_equal(a, b)
  with pytest.raises(WeightsMismatchError) as err:
    weights.load('resnet50', path)
  assert str(err.value) == (
      f'{path} is a BiT checkpoint of bit_resnet50x1, not weights for resnet50; BiT files load '
      f'into {", ".join(bv.BIG_VISION_MODELS)}.')
