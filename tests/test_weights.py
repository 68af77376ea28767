"""Weights without torch: names and layouts, .safetensors/.npz/Orbax loading, one-message
mismatch errors, num_classes/reinit_head, merge_pretrained. Numerical equivalence with
torchvision is in test_weights_torch*.py; the predict CLI's output and errors in
test_predict_images.py."""

import sys

import flax
import jax
import re

import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy

from jax_resnet import weights
from jax_resnet.weights.torch_layout import variable_shapes
from jax_resnet.weights.trees import flatten, unflatten


def random_variables(name, num_classes=None, seed=0):
  """A {'params', 'batch_stats'} tree of random float32 numpy arrays for model `name`."""
  if num_classes is None:
    num_classes = weights.torch_layout.default_num_classes(name)
  rng = np.random.RandomState(seed)
  flat = {k: rng.standard_normal(s.shape).astype(np.float32)
          for k, s in flatten(variable_shapes(name, num_classes)).items()}
  return unflatten({k: np.abs(v) + 0.5 if k.endswith('/var') else v for k, v in flat.items()})


def assert_same(a, b):
  flat_a, flat_b = flatten(a), flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for key in flat_a:
    assert np.asarray(flat_a[key]).dtype == np.asarray(flat_b[key]).dtype, key
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)


def test_imagenet_classes_ship_with_the_package():
  names = weights.imagenet_classes()
  assert len(names) == 1000
  assert (names[0], names[281], names[999]) == ('tench', 'tabby', 'toilet tissue')


def test_torchvision_names_shapes_and_order():
  sd = weights.to_torchvision('resnet18', random_variables('resnet18'))
  assert len(sd) == 122
  assert list(sd)[:6] == ['conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean',
                          'bn1.running_var', 'bn1.num_batches_tracked']
  assert list(sd)[-2:] == ['fc.weight', 'fc.bias']
  assert sd['conv1.weight'].shape == (64, 3, 7, 7)
  assert sd['layer2.0.downsample.0.weight'].shape == (128, 64, 1, 1)
  assert sd['fc.weight'].shape == (1000, 512)
  assert sd['bn1.num_batches_tracked'].dtype == np.int64 and sd['bn1.num_batches_tracked'] == 0
  video = weights.to_torchvision('r2plus1d_18', random_variables('r2plus1d_18'))
  assert list(video)[:2] == ['stem.0.weight', 'stem.1.weight']
  assert video['stem.3.weight'].shape == (64, 45, 3, 1, 1)
  assert video['layer1.0.conv1.0.0.weight'].shape == (144, 64, 1, 3, 3)
  assert video['layer2.0.conv2.0.3.weight'].shape == (128, 230, 3, 1, 1)
  assert video['fc.weight'].shape == (400, 512)
  mc3 = weights.to_torchvision('mc3_18', random_variables('mc3_18'))
  assert mc3['layer3.0.conv1.0.weight'].shape == (256, 128, 1, 3, 3)
  assert mc3['layer3.0.downsample.0.weight'].shape == (256, 128, 1, 1, 1)


@pytest.mark.parametrize('name', ['resnext50_32x4d', 'r3d_18'])
def test_from_to_torchvision_round_trip_is_exact(name):
  variables = random_variables(name)
  assert_same(weights.from_torchvision(name, weights.to_torchvision(name, variables)), variables)


def test_models_without_torchvision_counterpart():
  with pytest.raises(weights.WeightsError) as err:
    weights.from_torchvision('resnet20', {})
  assert str(err.value) == (
      'resnet20 has no torchvision counterpart; torchvision weights exist for resnet18, '
      'resnet34, resnet50, resnet101, resnet152, wide_resnet50_2, wide_resnet101_2, '
      'resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, r3d_18, mc3_18, r2plus1d_18.')


def test_safetensors_load_without_num_batches_tracked(tmp_path):
  variables = random_variables('resnet18')
  sd = {k: v for k, v in weights.to_torchvision('resnet18', variables).items()
        if not k.endswith('num_batches_tracked')}  # timm's hub files leave them out
  safetensors.numpy.save_file(sd, str(tmp_path / 'model.safetensors'))
  assert_same(weights.load('resnet18', tmp_path / 'model.safetensors'), variables)


def test_mismatch_is_one_error_listing_names_and_shapes(tmp_path):
  sd = weights.to_torchvision('resnet18', random_variables('resnet18'))
  del sd['fc.bias'], sd['layer4.1.bn2.running_var']
  sd['layer1.0.conv1.weight'] = np.zeros((64, 64, 1, 1), np.float32)
  sd['head.weight'] = np.zeros((10, 512), np.float32)
  path = tmp_path / 'r18.safetensors'
  safetensors.numpy.save_file(sd, str(path))
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet18', path)
  assert str(err.value) == (
      f'{path} does not match resnet18 (102 tensors): missing 2: layer4.1.bn2.running_var '
      '(512,), fc.bias (1000,); unexpected 1: head.weight (10, 512); wrong shape 1: '
      'layer1.0.conv1.weight (64, 64, 1, 1) (model expects (64, 64, 3, 3)). Check the model '
      'name and that the file holds a torchvision-layout ResNet state dict.')


def test_safetensors_names_and_shapes_are_checked_from_the_header_before_the_data(tmp_path):
  """The data part cut to 10 bytes: the names and shapes refusal comes first (the header
  alone is read), and a file whose names fit is then refused as truncated, not misread."""
  sd = weights.to_torchvision('resnet18', random_variables('resnet18'))
  good = {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}
  wrong = dict(good, **{'layer1.0.conv1.weight': np.zeros((64, 64, 1, 1), np.float32)})
  for name, arrays in (('wrong', wrong), ('good', good)):
    path = tmp_path / f'{name}.safetensors'
    safetensors.numpy.save_file(arrays, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:8 + int.from_bytes(data[:8], 'little') + 10])
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet18', tmp_path / 'wrong.safetensors')
  assert str(err.value) == (
      f'{tmp_path / "wrong.safetensors"} does not match resnet18 (102 tensors): wrong shape 1: '
      'layer1.0.conv1.weight (64, 64, 1, 1) (model expects (64, 64, 3, 3)). Check the model '
      'name and that the file holds a torchvision-layout ResNet state dict.')
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', tmp_path / 'good.safetensors')
  assert re.fullmatch(
      re.escape(f'{tmp_path / "good.safetensors"}: ') + r'\S+ declares shape \([\d, ]+\) '
      r'\(\d+ bytes\) at bytes \d+\.\.\d+ of a data part of 10; the file is truncated or '
      r'crafted\.', str(err.value)), str(err.value)


def test_mismatch_lists_are_truncated_with_a_count():
  sd = weights.to_torchvision('resnet18', random_variables('resnet18'))
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.from_torchvision('resnet34', sd)
  message = str(err.value)
  assert message.startswith(
      'state dict does not match resnet34 (182 tensors): missing 80: layer1.2.conv1.weight '
      '(64, 64, 3, 3), layer1.2.bn1.weight (64,), layer1.2.bn1.bias (64,), '
      'layer1.2.bn1.running_mean (64,), layer1.2.bn1.running_var (64,), ... and 75 more. ')
  assert message.endswith('. The file holds resnet18 weights.')


def test_unknown_missing_and_corrupt_files(tmp_path):
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', tmp_path / 'none.pth')
  assert str(err.value) == f'weights file {tmp_path / "none.pth"} not found.'
  (tmp_path / 'w.h5').write_bytes(b'x')
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', tmp_path / 'w.h5')
  assert str(err.value) == (
      f"{tmp_path / 'w.h5'}: unknown weights file extension '.h5'; expected .safetensors, "
      '.pth/.pt/.bin (torch state dict), .npz (jax_resnet.weights.save_npz or a BiT release '
      'checkpoint) or an Orbax checkpoint directory (a train.py workdir).')
  for suffix, kind in (('.safetensors', 'safetensors'), ('.npz', '.npz')):
    bad = tmp_path / f'bad{suffix}'
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00not json at all')
    with pytest.raises(weights.WeightsFileError) as err:
      weights.load('resnet18', bad)
    assert str(err.value).startswith(f'cannot read {bad} as {kind} (')
    assert 'the file is corrupt or not a' in str(err.value)
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', tmp_path)
  assert str(err.value) == (
      f'{tmp_path} is a directory without an Orbax checkpoint; expected a train.py workdir '
      '(with checkpoints/<step>/state) or one checkpoints/<step> folder.')


def test_torch_file_without_torch_installed(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # makes `import torch` raise ImportError
  (tmp_path / 'r18.pth').write_bytes(b'PK')
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', tmp_path / 'r18.pth')
  assert str(err.value) == (f'{tmp_path / "r18.pth"} is a torch file and reading it needs '
                            'torch (pip install torch); or use a .safetensors file.')


def test_npz_round_trip_and_num_classes_rules(tmp_path):
  variables = random_variables('resnet18')
  path = weights.save_npz(tmp_path / 'r18', variables)
  assert path == str(tmp_path / 'r18.npz')
  with np.load(path) as data:
    assert 'params/conv_init/kernel' in data.files and 'batch_stats/bn_init/mean' in data.files
  assert_same(weights.load('resnet18', path), variables)
  assert_same(weights.load('resnet18', path, num_classes=1000), variables)
  with pytest.raises(weights.HeadMismatchError) as err:
    weights.load('resnet18', path, num_classes=10)
  assert str(err.value) == (
      f'{path} has a 1000-class head but num_classes=10 was requested; pass reinit_head=True '
      'to drop the pretrained head and train a new one.')
  backbone = weights.load('resnet18', path, num_classes=10, reinit_head=True)
  assert 'head' not in backbone['params']
  assert_same(weights.load('resnet18', path, num_classes=0), backbone)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet34', path)
  assert str(err.value).startswith(f'{path} does not match resnet34 (182 arrays): missing 80: ')


def test_merge_pretrained_keeps_fresh_head_only_when_asked():
  pretrained = random_variables('resnet18', seed=1)
  fresh = flax.core.freeze(random_variables('resnet18', num_classes=10, seed=2))
  merged = weights.merge_pretrained(fresh, pretrained, reinit_head=True)
  assert_same(merged['params']['head'], fresh['params']['head'])
  assert_same({k: v for k, v in merged['params'].items() if k != 'head'},
              {k: v for k, v in pretrained['params'].items() if k != 'head'})
  assert_same(merged['batch_stats'], pretrained['batch_stats'])
  headless = {**pretrained, 'params': {k: v for k, v in pretrained['params'].items()
                                       if k != 'head'}}
  assert_same(weights.merge_pretrained(fresh, headless, reinit_head=True), merged)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.merge_pretrained(fresh, pretrained, reinit_head=False)
  assert str(err.value) == (
      'pretrained variables do not match the model: wrong shape 2: params/head/kernel '
      '(512, 1000) (model expects (512, 10)), params/head/bias (1000,) (model expects (10,)). The '
      'pretrained weights were made for another model or options. The classifier head '
      'differs: pass reinit_head=True to train a new head (fine-tuning to another '
      'num_classes).')


def test_merge_pretrained_casts_to_the_fresh_dtype():
  pretrained = random_variables('resnet18', seed=1)
  fresh = jax.tree.map(lambda x: x.astype(jax.numpy.bfloat16), pretrained)
  merged = weights.merge_pretrained(fresh, pretrained)
  kernel = merged['params']['conv_init']['kernel']
  assert kernel.dtype == jax.numpy.bfloat16
  np.testing.assert_array_equal(kernel, fresh['params']['conv_init']['kernel'])


@flax.struct.dataclass
class _State:
  """The trainer's TrainState fields (jax_resnet/training/steps.py)."""
  step: object
  params: object
  batch_stats: object
  opt_state: object
  ema_params: object
  warming_up: object


def _save_orbax(directory, step, variables):
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True),
                                  item_names=('state', 'data', 'meta'))
  state = _State(step=np.int32(step), params=variables['params'],
                 batch_stats=variables['batch_stats'],
                 opt_state=(jax.tree.map(np.zeros_like, variables['params']),),
                 ema_params=None, warming_up=np.bool_(False))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({'epoch': 0}),
      meta=ocp.args.JsonSave({'model': 'resnet20'})))
  manager.wait_until_finished()
  manager.close()


def test_orbax_workdir_checkpoints_and_step_folders(tmp_path):
  older, newer = random_variables('resnet20', seed=1), random_variables('resnet20', seed=2)
  _save_orbax(tmp_path / 'checkpoints', 5, older)
  _save_orbax(tmp_path / 'checkpoints', 9, newer)
  assert_same(weights.load('resnet20', tmp_path), newer)
  assert_same(weights.load('resnet20', tmp_path / 'checkpoints'), newer)
  assert_same(weights.load('resnet20', tmp_path / 'checkpoints' / '5'), older)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet32', tmp_path)
  assert str(err.value).startswith(f'{tmp_path} does not match resnet32 (')


@pytest.mark.parametrize('dtype, value, message', [
    (np.int8, 1, 'holds int8 values; weights must be floating point (is the file quantised, or '
                 'not a weights file?).'),
    (np.complex64, 1, 'holds complex64 values; weights must be floating point (is the file '
                      'quantised, or not a weights file?).'),
    (np.float32, np.nan, 'has 1 non-finite values; the file is corrupt or was saved from a '
                         'diverged run.'),
])
def test_non_float_and_non_finite_weights_are_refused(tmp_path, dtype, value, message):
  flat = flatten(random_variables('resnet18', seed=5))
  kernel = flat['params/head/kernel'].astype(dtype)
  kernel[0, 0] = value
  flat['params/head/kernel'] = kernel
  path = weights.save_npz(tmp_path / 'bad.npz', unflatten(flat))
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', path)
  assert str(err.value) == f'{path}: params/head/kernel {message}'


def test_an_npz_member_is_checked_from_its_header_before_it_is_read(tmp_path):
  """A compressed member of ~100 KB declaring 100 MB: refused by shape, never decompressed."""
  import tracemalloc
  flat = flatten(random_variables('resnet18', seed=6))
  flat['params/conv_init/kernel'] = np.zeros((25_000_000,), np.float32)
  path = str(tmp_path / 'bomb.npz')
  np.savez_compressed(path, **flat)
  del flat
  tracemalloc.start()
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet18', path)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert 'params/conv_init/kernel' in str(err.value) and '(25000000,)' in str(err.value)
  assert peak < 20_000_000  # the 100 MB array was never materialised


def test_an_npz_member_shorter_than_its_header_declares_is_refused(tmp_path):
  import zipfile
  path = tmp_path / 'short.npz'
  header = tmp_path / 'x.npy'
  np.save(header, np.zeros((1000,), np.float32))
  data = header.read_bytes()
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('params/head/bias.npy', data[:-3996])  # 1 of 1000 values left
  with pytest.raises(weights.WeightsFileError) as err:
    weights.load('resnet18', str(path))
  assert str(err.value) == (f'{path}: params/head/bias declares shape (1000,) (4000 bytes) but '
                            'holds 4 bytes; the file is truncated or crafted.')


def test_a_zero_dimensional_head_kernel_is_a_mismatch_not_a_traceback(tmp_path):
  flat = flatten(random_variables('resnet18', seed=7))
  flat['params/head/kernel'] = np.float32(1.0)
  path = str(tmp_path / 'scalar_head.npz')
  np.savez(path, **flat)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.load('resnet18', path)
  assert str(err.value).startswith(f'{path} does not match resnet18 (')
  assert 'params/head/kernel ()' in str(err.value)


@pytest.mark.parametrize('dtype, name', [(np.int8, 'int8'), (np.bool_, 'bool'),
                                         (np.uint16, 'uint16')])
def test_the_raw_safetensors_reader_knows_integer_and_boolean_dtypes(tmp_path, dtype, name):
  path = str(tmp_path / 'w.safetensors')
  values = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
  safetensors.numpy.save_file({'fc.bias': values, 'fc.weight': np.ones((2, 2), np.float32)},
                              path)
  raw = weights.files._read_safetensors_raw(path)
  assert raw['fc.bias'].dtype == np.dtype(name)
  np.testing.assert_array_equal(raw['fc.bias'], values)
  np.testing.assert_array_equal(raw['fc.weight'], np.ones((2, 2), np.float32))
