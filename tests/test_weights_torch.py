"""Weights against torch/torchvision (skipped without torch): numerical equivalence of the
smaller models, .pth/.bin loading, refusing code-running pickles, predict vs torchvision.
The large models are in test_weights_torch_large.py."""

import pickle
import re

import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from PIL import Image  # noqa: E402  skipped without torch
from safetensors.torch import save_file  # noqa: E402  skipped without torch
from weights_torch_check import check_model, torchvision_model  # noqa: E402  skipped without torch

from jax_resnet import predict, weights  # noqa: E402  skipped without torch

SMALL = ('resnet18', 'resnet34', 'resnet50', 'resnext50_32x4d', 'r3d_18', 'mc3_18',
         'r2plus1d_18')


# One video net in float64 by default; the other two where CI runs the slow tests.
SLOW_VIDEO = ('mc3_18', 'r2plus1d_18')


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW_VIDEO else n for n in SMALL])
def test_logits_and_stages_match_torchvision_in_float64(name, x64):
  errors = check_model(name, 'float64')
  print(name, {k: f'{v:.2e}' for k, v in errors.items()})


@pytest.mark.parametrize('name', ['resnet18', 'r2plus1d_18'])
def test_logits_and_stages_match_torchvision_in_float32(name):
  errors = check_model(name, 'float32')
  print(name, {k: f'{v:.2e}' for k, v in errors.items()})


def test_state_dict_names_and_count_are_torchvision_s():
  sd = torchvision.models.resnet18(weights=None).state_dict()
  variables = weights.from_torchvision('resnet18', sd)
  assert len(sd) == 122
  assert variables['params']['stage2_block1']['proj_conv']['kernel'].shape == (1, 1, 64, 128)
  assert variables['params']['head']['kernel'].shape == (512, 1000)
  np.testing.assert_array_equal(variables['params']['conv_init']['kernel'],
                                sd['conv1.weight'].numpy().transpose(2, 3, 1, 0))
  video = torchvision.models.video.r2plus1d_18(weights=None).state_dict()
  ours = weights.from_torchvision('r2plus1d_18', video)['params']
  np.testing.assert_array_equal(ours['stage2_block1']['conv2_temporal']['kernel'],
                                video['layer2.0.conv2.0.3.weight'].numpy().transpose(2, 3, 4, 1, 0))


def _variables_equal(a, b):
  flat_a, flat_b = (weights.trees.flatten(v) for v in (a, b))
  assert list(flat_a) == list(flat_b)
  for key in flat_a:
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)


def test_load_pth_plain_wrapped_and_data_parallel(tmp_path):
  model = torchvision_model('resnet18')
  expected = weights.from_torchvision('resnet18', model.state_dict())
  plain, wrapped = tmp_path / 'plain.pth', tmp_path / 'ckpt.bin'
  torch.save(model.state_dict(), plain)
  torch.save({'epoch': 3, 'state_dict': {f'module.{k}': v for k, v in
                                         model.state_dict().items()}}, wrapped)
  _variables_equal(weights.load('resnet18', plain), expected)
  _variables_equal(weights.load('resnet18', wrapped), expected)


def test_load_bfloat16_safetensors_as_float32(tmp_path):
  sd = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in torchvision_model('resnet18').state_dict().items()}
  save_file(sd, tmp_path / 'bf16.safetensors')
  loaded = weights.load('resnet18', tmp_path / 'bf16.safetensors')
  kernel = loaded['params']['conv_init']['kernel']
  assert kernel.dtype == np.float32
  np.testing.assert_array_equal(kernel, sd['conv1.weight'].float().numpy().transpose(2, 3, 1, 0))


class _WritesMarker:
  """Unpickling this runs exec(), which creates the marker file."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (exec, (f'open({self.marker!r}, "w").write("code ran")',))


def test_code_running_pickle_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / 'marker'
  sd = dict(torchvision.models.resnet18(weights=None).state_dict())
  sd['fc.bias'] = _WritesMarker(marker)
  planted = tmp_path / 'resnet18.pth'
  torch.save(sd, planted)
  raw = tmp_path / 'raw.pt'
  raw.write_bytes(pickle.dumps(_WritesMarker(marker)))
  messages = []
  for path in (planted, raw):
    with pytest.raises(weights.WeightsFileError) as err:
      weights.load('resnet18', path)
    messages.append(str(err.value))
    assert messages[-1].startswith(
        f'refused to load {path}: torch.load(weights_only=True) found content other than '
        'tensors and plain containers (')
    assert messages[-1].endswith('; unpickling it could run arbitrary code, so it was not '
                                 'loaded. If the file is corrupt, download it again; if you '
                                 'trust it, re-save its state dict as .safetensors.')
    assert not marker.exists()
  assert 'GLOBAL exec' in messages[0]  # torch names the global it refused
  torch.load(planted, weights_only=False)  # the control: the file really runs code
  assert marker.read_text() == 'code ran'


def test_corrupt_torch_file_is_one_error_naming_it(tmp_path):
  good, broken = tmp_path / 'good.pth', tmp_path / 'broken.pth'
  torch.save({'conv1.weight': torch.zeros(2)}, good)
  broken.write_bytes(good.read_bytes()[:200])
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', broken)
  assert str(err.value).startswith(f'cannot read {broken} as a torch checkpoint (RuntimeError: ')
  assert str(err.value).endswith('the file is corrupt or not a torch file.')


def _photo(path):
  """A smooth, non-square test picture (not noise) so the crop and resize matter."""
  yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
  rgb = np.stack([xx / 320 * 255, yy / 240 * 255, (xx + yy) % 97 * 2.5], -1)
  Image.fromarray(rgb.astype(np.uint8)).save(path)


def test_predict_agrees_with_torchvision(tmp_path, capsys):
  model = torchvision_model('resnet18', seed=3)
  save_file(dict(model.state_dict()), tmp_path / 'resnet18.safetensors')
  image = tmp_path / 'photo.png'
  _photo(image)
  transform = torchvision.transforms.Compose([
      torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224),
      torchvision.transforms.ToTensor(),
      torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
  with Image.open(image) as pil:
    batch = transform(pil.convert('RGB'))[None]
  with torch.no_grad():
    probabilities = torch.softmax(model(batch), -1)[0].double().numpy()
  top5 = np.argsort(-probabilities)[:5]
  code = predict.main(['--model', 'resnet18', '--weights', str(tmp_path / 'resnet18.safetensors'),
                       str(image)])
  lines = capsys.readouterr().out.splitlines()
  assert code == 0 and lines[0] == str(image) and len(lines) == 6
  rows = [re.fullmatch(r'  (\d\.\d{4})  (.+) \((\d+)\)', line).groups() for line in lines[1:]]
  names = weights.imagenet_classes()
  assert [int(index) for _, _, index in rows] == top5.tolist()
  assert [name for _, name, _ in rows] == [names[i] for i in top5]
  np.testing.assert_allclose([float(p) for p, _, _ in rows], probabilities[top5], atol=1e-4)
  assert probabilities[top5[0]] - probabilities[top5[1]] > 1e-3  # a top-1 that can agree


def test_preprocess_is_torchvision_eval_transform_bit_for_bit():
  rng = np.random.RandomState(0)
  for resize in (256, 232):  # 232: torchvision's IMAGENET1K_V2 eval transform
    transform = torchvision.transforms.Compose([
        torchvision.transforms.Resize(resize), torchvision.transforms.CenterCrop(224),
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    for width, height in ((300, 451), (517, 333), (1000, 257)):
      image = Image.fromarray(rng.randint(0, 256, (height, width, 3)).astype(np.uint8))
      np.testing.assert_array_equal(predict.preprocess(image, resize),
                                    transform(image).numpy().transpose(1, 2, 0))


def test_to_torchvision_loads_into_torchvision_strictly():
  source = torchvision_model('mc3_18')
  sd = weights.to_torchvision('mc3_18', weights.from_torchvision('mc3_18', source.state_dict()))
  target = torchvision.models.video.mc3_18(weights=None)
  result = target.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  assert result.missing_keys == [] and result.unexpected_keys == []
  for key, value in source.state_dict().items():
    assert torch.equal(target.state_dict()[key], value), key


def test_a_stride_0_tensor_is_refused_before_it_is_materialised(tmp_path):
  """A head of 20000 classes stored as one float: a few KB of file standing for 40 MB."""
  state = torchvision_model('resnet18').state_dict()
  state['fc.weight'] = torch.zeros(1).expand(20000, 512)
  state['fc.bias'] = torch.zeros(1).expand(20000)
  path = tmp_path / 'expanded.pth'
  torch.save(state, path)
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', path)
  assert str(err.value) == (
      f'{path}: fc.weight declares shape (20000, 512) (40960000 bytes) over a storage of 4 '
      'bytes (a stride-0 or overlapping view); a weights file stores every value, so it was '
      'refused.')


def _mapped_from(path, tensor) -> bool:
  """Whether the tensor's bytes lie in a memory mapping of the file (/proc/self/maps)."""
  address = tensor.untyped_storage().data_ptr()
  with open('/proc/self/maps') as maps:
    for line in maps:
      fields = line.split()
      low, high = (int(v, 16) for v in fields[0].split('-'))
      if fields[-1] == str(path) and low <= address < high:
        return True
  return False


@pytest.mark.skipif(not __import__('os').path.exists('/proc/self/maps'),
                    reason='reads the process memory map of Linux')
def test_a_torch_file_is_mapped_and_checked_by_names_and_shapes_before_it_is_read(tmp_path):
  """torch.load(mmap=True): the names and shapes compared are those of tensors still in the
  file's mapping (nothing copied yet); the variables returned are copies."""
  state = torchvision_model('resnet18').state_dict()
  state['layer1.0.conv1.weight'] = torch.zeros(64, 64, 1, 1)
  path = tmp_path / 'wrong.pth'
  torch.save(state, path)
  shapes = weights.files.state_dict_shapes(str(path))
  assert _mapped_from(path, shapes['fc.weight']) and _mapped_from(path, shapes['conv1.weight'])
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet18', path)
  assert str(err.value) == (
      f'{path} does not match resnet18 (102 tensors): wrong shape 1: layer1.0.conv1.weight '
      '(64, 64, 1, 1) (model expects (64, 64, 3, 3)). Check the model name and that the file '
      'holds a torchvision-layout ResNet state dict.')
  state['layer1.0.conv1.weight'] = torch.ones(64, 64, 3, 3)
  torch.save(state, path)
  variables = weights.load('resnet18', path)
  kernel = variables['params']['stage1_block1']['conv1']['kernel']
  assert kernel.shape == (3, 3, 64, 64) and float(kernel.sum()) == 64 * 64 * 9
  assert variables['params']['bn_init']['bias'].base is None  # a copy, not the mapping


def test_read_torch_refuses_a_torch_older_than_the_floor(tmp_path, monkeypatch):
  path = tmp_path / 'w.pth'
  torch.save(torchvision_model('resnet18').state_dict(), path)
  monkeypatch.setattr(torch, '__version__', '2.5.1+cpu')
  with pytest.raises(weights.WeightsFileError) as err:
    weights.read_torch(str(path))
  assert str(err.value) == (
      f'reading {path} needs torch >= 2.10 (found 2.5.1+cpu): older releases have published '
      'ways around torch.load(weights_only=True). Upgrade torch, or use a .safetensors file.')
