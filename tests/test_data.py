"""jax_resnet.data: splits, shapes, normalisation, eval coverage, determinism, resume, multi-host
sharding, augmentation, the TFDS path (mocked) and the error messages. CPU only, no downloads."""

import collections
import importlib.util
import io
import json
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_helpers import (as_rows, concat_batches, config, crops_and_flips, digits_split, spec,
                          take)
from jax_resnet import data
from jax_resnet.config import resolve
from jax_resnet.data import transforms
from jax_resnet.data.spec import DataSpec
from jax_resnet.errors import BadLabelError, ConfigError, DataError, DataNotFoundError
from jax_resnet.training import setup


@pytest.fixture(scope='module')
def digits():
  return digits_split()


def test_digits_info_and_train_batch():
  c = spec()
  assert data.dataset_info(c) == data.DatasetInfo(10, 1437, 360, (16, 16, 3))
  batch = next(data.train_iterator(c))
  assert set(batch) == {'image', 'label'}
  assert batch['image'].shape == (32, 16, 16, 3) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (32,) and batch['label'].dtype == np.int32
  assert 0 <= batch['label'].min() and batch['label'].max() <= 9
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert np.all(batch['image'][..., 0] == batch['image'][..., 2])  # gray repeated


def test_digits_image_size_24_nearest_upsampling():
  c = spec(image_size=24, eval_batch_size=360)
  assert data.dataset_info(c).image_shape == (24, 24, 3)
  (batch,) = list(data.eval_batches(c))
  assert batch['image'].shape == (360, 24, 24, 3)
  # 8 -> 24 is an exact 3x pixel replication.
  assert np.array_equal(batch['image'][:, ::3, ::3], batch['image'][:, 2::3, 2::3])


def test_eval_covers_split_once_with_padding(digits):
  _, _, test_images, test_labels = digits
  batches = list(data.eval_batches(spec(eval_batch_size=100)))
  assert len(batches) == 4
  for b in batches:
    assert b['image'].shape == (100, 16, 16, 3) and b['mask'].shape == (100,)
    assert b['mask'].dtype == np.bool_ and b['label'].dtype == np.int32
  assert [int(b['mask'].sum()) for b in batches] == [100, 100, 100, 60]
  last = batches[-1]
  assert last['mask'][:60].all() and not last['mask'][60:].any()
  assert not last['image'][60:].any()
  merged = concat_batches(batches)
  valid = merged['mask']
  assert collections.Counter(merged['label'][valid]) == collections.Counter(test_labels)
  assert as_rows(merged['image'][valid]) == as_rows(test_images)


def test_per_pixel_mean_centres_the_training_set():
  c = spec(normalize='per_pixel_mean', eval_split='train', eval_batch_size=500)
  merged = concat_batches(list(data.eval_batches(c)))
  images = merged['image'][merged['mask']]
  assert images.shape == (1437, 16, 16, 3)
  np.testing.assert_allclose(images.mean(axis=0), 0.0, atol=1e-5)
  assert images.min() < -0.5 and images.max() > 0.5  # centred, not collapsed


def test_mean_std_normalisation(digits):
  c = spec(normalize='mean_std', eval_batch_size=360)
  (batch,) = list(data.eval_batches(c))
  _, _, test_images, _ = digits
  expected = (test_images - np.float32(transforms.IMAGENET_MEAN)) / np.float32(
      transforms.IMAGENET_STD)
  assert as_rows(np.round(batch['image'], 4)) == as_rows(np.round(expected, 4))


def test_one_epoch_covers_train_set_then_reshuffles(digits):
  train_images, train_labels, _, _ = digits
  merged = concat_batches(take(data.train_iterator(spec()), 90))  # 2880 = 2 epochs + 6
  epoch0, epoch1 = merged['image'][:1437], merged['image'][1437:2874]
  assert collections.Counter(merged['label'][:1437]) == collections.Counter(train_labels)
  assert as_rows(epoch0) == as_rows(train_images) == as_rows(epoch1)
  assert not np.array_equal(epoch0, epoch1)


def test_same_seed_same_batches_other_seed_other_order():
  c = spec(augment='pad_crop_flip')
  a, b = take(data.train_iterator(c), 3), take(data.train_iterator(c), 3)
  for x, y in zip(a, b):
    assert np.array_equal(x['image'], y['image']) and np.array_equal(x['label'], y['label'])
  other = take(data.train_iterator(spec(augment='pad_crop_flip', seed=1)), 3)
  assert not np.array_equal(concat_batches(a)['label'], concat_batches(other)['label'])


@pytest.mark.parametrize('k', [0, 3, 50])  # 50 batches crosses the epoch boundary (44.9)
def test_resume_from_state_continues_exactly(k):
  c = spec(augment='pad_crop_flip')
  original = data.train_iterator(c)
  take(original, k)
  state = json.loads(json.dumps(data.get_iterator_state(original)))
  assert state['step'] == k
  resumed = data.train_iterator(c)
  data.set_iterator_state(resumed, state)
  for x, y in zip(take(original, 3), take(resumed, 3)):
    assert np.array_equal(x['image'], y['image']) and np.array_equal(x['label'], y['label'])


def test_resume_with_other_seed_is_refused():
  it = data.train_iterator(spec())
  next(it)
  state = data.get_iterator_state(it)
  with pytest.raises(DataError, match='seed'):
    data.set_iterator_state(data.train_iterator(spec(seed=7)), state)


@pytest.mark.parametrize('augment', ['none', 'pad_crop_flip'])
def test_process_shards_partition_the_global_batch(augment):
  step = 2
  single = take(data.train_iterator(spec(augment=augment)), step + 1)[step]
  shards = [take(data.train_iterator(spec(augment=augment), process_index=p,
                                     process_count=2), step + 1)[step] for p in range(2)]
  assert all(s['image'].shape == (16, 16, 16, 3) for s in shards)
  assert not set(as_rows(shards[0]['image'])) & set(as_rows(shards[1]['image']))
  union = concat_batches(shards)
  assert np.array_equal(union['image'], single['image'])
  assert np.array_equal(union['label'], single['label'])


def test_eval_shards_partition_the_eval_set(digits):
  shards = [list(data.eval_batches(spec(eval_batch_size=100), p, 2)) for p in range(2)]
  assert [len(s) for s in shards] == [4, 4]
  assert all(b['image'].shape == (50, 16, 16, 3) for s in shards for b in s)
  merged = concat_batches(shards[0] + shards[1])
  assert int(merged['mask'].sum()) == 360
  assert as_rows(merged['image'][merged['mask']]) == as_rows(digits[2])


def test_pad_crop_is_a_window_of_the_padded_image():
  image = np.arange(5 * 6 * 2, dtype=np.float32).reshape(5, 6, 2) + 1
  out = transforms.pad_crop(image, 2, top=1, left=3)
  expected = np.zeros((5, 6, 2), np.float32)
  expected[1:, :5] = image[:4, 1:]  # window rows 1..5, cols 3..8 of the 9x10 padded image
  assert np.array_equal(out, expected)
  assert np.array_equal(transforms.pad_crop(image, 2, 2, 2), image)


def test_pad_crop_flip_support_and_flip_rate():
  image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
  support = crops_and_flips(image, 2)
  rng = np.random.default_rng(1)
  flips, seen = 0, set()
  for _ in range(2000):
    out = transforms.random_pad_crop_flip(image, 2, rng)
    assert out.shape == image.shape
    match = np.flatnonzero((support == out).all(axis=(1, 2, 3)))
    assert match.size >= 1
    flips += int(match[0] % 2)
    seen.add(int(match[0]))
  assert 0.45 < flips / 2000 < 0.55
  assert len(seen) == support.shape[0]  # every offset and flip occurs


def test_pipeline_augments_each_example_within_its_support():
  plain = next(data.train_iterator(spec()))
  augmented = next(data.train_iterator(spec(augment='pad_crop_flip')))
  assert np.array_equal(plain['label'], augmented['label'])  # same order, same examples
  changed = 0
  for src, out in zip(plain['image'], augmented['image']):
    assert (crops_and_flips(src, 4) == out).all(axis=(1, 2, 3)).any()
    changed += int(not np.array_equal(src, out))
  assert changed > 16


def test_inception_crops_and_eval_center_crop():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
  for _ in range(20):
    out = transforms.random_resized_crop(image, 32, rng)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  # Eval: shorter side 60 -> crop 60*224/256 = 52.5 px around the centre, resized to 32.
  ramp = np.tile(np.arange(90, dtype=np.uint8)[None, :, None], (60, 1, 3))
  center = transforms.center_crop_resize(ramp, 32)
  assert center.shape == (32, 32, 3)
  assert abs(float(center.mean()) - 44.5) < 1.0 and 18 <= center.min() and center.max() <= 72


@pytest.mark.parametrize('augment', ['none', 'pad_crop_flip', 'inception'])
def test_every_augment_keeps_shapes_and_eval_is_deterministic(augment):
  c = spec(augment=augment, image_size=12, normalize='mean_std')
  batch = next(data.train_iterator(c))
  assert batch['image'].shape == (32, 12, 12, 3) and batch['image'].dtype == np.float32
  assert np.isfinite(batch['image']).all()
  first, second = (concat_batches(list(data.eval_batches(c))) for _ in range(2))
  assert np.array_equal(first['image'], second['image'])


def test_jpeg_and_png_bytes_decode():
  yy, xx = np.mgrid[0:20, 0:30]
  image = np.stack([xx * 8, yy * 12, xx + yy], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
  for fmt in ('JPEG', 'PNG'):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=95)
    out = transforms.decode(buf.getvalue())
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() < (3 if fmt == 'JPEG' else 1e-9)


def test_holdout_replaces_the_eval_split(digits):
  c = spec(holdout_size=100, eval_split='does-not-matter')
  info = data.dataset_info(c)
  assert (info.num_train, info.num_eval) == (1337, 100)
  merged = concat_batches(list(data.eval_batches(c)))
  held = merged['image'][merged['mask']]
  assert held.shape[0] == 100
  train_rows = set(as_rows(concat_batches(take(data.train_iterator(c), 42))['image'][:1337]))
  assert len(train_rows) == 1337 and not train_rows & set(as_rows(held))
  assert train_rows | set(as_rows(held)) == set(as_rows(digits[0]))


def test_synthetic_is_deterministic():
  c = spec(dataset='synthetic', image_size=8, num_classes=7, batch_size=4)
  info = data.dataset_info(c)
  assert info.num_classes == 7 and info.image_shape == (8, 8, 3) and info.num_train > 50_000
  a, b = next(data.train_iterator(c)), next(data.train_iterator(c))
  assert np.array_equal(a['image'], b['image']) and a['image'].shape == (4, 8, 8, 3)
  assert a['label'].max() < 7 and 0.0 <= a['image'].min() and a['image'].max() <= 1.0


def test_tfds_cifar10_end_to_end_with_mock_data(tmp_path):
  c = spec(dataset='cifar10', image_size=32, data_dir=str(tmp_path), batch_size=8,
             eval_batch_size=6, augment='pad_crop_flip', normalize='per_pixel_mean')
  with tfds.testing.mock_data(num_examples=20):
    assert data.dataset_info(c) == data.DatasetInfo(10, 20, 20, (32, 32, 3))
    batches = take(data.train_iterator(c), 3)  # crosses the 20-example epoch boundary
    evals = list(data.eval_batches(c))
    plain = list(data.eval_batches(spec(dataset='cifar10', image_size=32,
                                          data_dir=str(tmp_path), eval_batch_size=20)))
  for b in batches:
    assert b['image'].shape == (8, 32, 32, 3) and b['image'].dtype == np.float32
    assert b['label'].dtype == np.int32 and 0 <= b['label'].min() and b['label'].max() <= 9
    assert -1.0 <= b['image'].min() and b['image'].max() <= 1.0
  assert [int(b['mask'].sum()) for b in evals] == [6, 6, 6, 2]
  raw = plain[0]['image']  # normalize='none': mock uint8 pixels scaled to [0, 1]
  assert raw.shape == (20, 32, 32, 3) and 0.0 <= raw.min() and raw.max() <= 1.0
  assert np.allclose(raw * 255, np.round(raw * 255), atol=1e-3)
  cached = os.listdir(tmp_path / 'jax_resnet_cache')
  assert len(cached) == 1 and cached[0].endswith('pixel_mean.npy')


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
  c = spec(dataset='cifar10', image_size=32, data_dir=str(tmp_path))
  with pytest.raises(DataNotFoundError, match='python -m jax_resnet.data prepare cifar10'):
    data.train_iterator(c)
  c = spec(dataset='imagenet2012', num_classes=1000, image_size=32, normalize='mean_std',
             data_dir=str(tmp_path))
  with pytest.raises(DataNotFoundError) as info:
    data.dataset_info(c)
  msg = str(info.value)
  assert 'ILSVRC2012_img_train.tar' in msg and 'ILSVRC2012_img_val.tar' in msg
  assert str(tmp_path / 'downloads' / 'manual') in msg
  assert os.listdir(tmp_path) == []  # looking never writes or downloads


@pytest.mark.parametrize('overrides, message', [
    (dict(dataset='no_such_dataset_xyz'),
     "dataset='no_such_dataset_xyz' is not a known dataset: it is neither built in "
     "('digits', 'synthetic') nor a TFDS dataset name; use one of those, e.g. 'cifar10', "
     "'cifar100', 'imagenet2012'"),
    (dict(batch_size=30, process_count=4),
     'batch_size=30 is not divisible by the 4 processes: every process reads an equal share of '
     'each global batch; use a multiple of 4'),
    (dict(batch_size=33, eval_batch_size=100, process_count=3),
     'eval_batch_size=100 is not divisible by the 3 processes: every process reads an equal '
     'share of each global batch; use a multiple of 3'),
    (dict(holdout_size=1437),
     "holdout_size=1437 leaves no training examples: the train split has 1437; use a smaller "
     "holdout (e.g. 5000 of CIFAR-10's 50000)"),
])
def test_pipeline_errors(overrides, message):
  """What only opening the data can tell: the pipeline's own errors."""
  process_count = overrides.pop('process_count', 1)
  with pytest.raises(DataError) as err:
    data.train_iterator(spec(**overrides), process_count=process_count)
  assert str(err.value) == message


@pytest.mark.parametrize('overrides, message', [
    (dict(image_size=4),
     'image_size=4 must be an integer >= 8 (the digits are 8x8, CIFAR 32, ImageNet 224).'),
    (dict(augment='mixup'),
     "augment must be one of 'none', 'pad_crop_flip', 'inception', got 'mixup'."),
    (dict(normalize='zca'),
     "normalize must be one of 'per_pixel_mean', 'mean_std', 'none', got 'zca'."),
    (dict(dataset='imagenet2012', normalize='per_pixel_mean'),
     "normalize='per_pixel_mean' is not supported for imagenet2012: a mean image over 1.28M "
     'JPEGs is too slow to compute; use --config.normalize=mean_std.'),
    (dict(eval_split='validation'),
     "split 'validation' does not exist in the embedded 'digits' dataset: use "
     "train_split='train' and eval_split='test'."),
])
def test_config_errors(overrides, message):
  """The data keys' rules, checked at the config boundary before any data is opened."""
  with pytest.raises(ConfigError) as err:
    resolve(config(**overrides))
  assert str(err.value) == f'Invalid config: {message}'


def test_the_data_rules_hold_without_a_config():
  """data.check is the data layer's own: a DataError, a refused choice carrying its choices."""
  with pytest.raises(DataError) as err:
    data.check(spec(augment='mixup'))
  assert str(err.value) == ("augment must be one of 'none', 'pad_crop_flip', 'inception', got "
                            "'mixup'.")
  assert err.value.choices == ('none', 'pad_crop_flip', 'inception')
  with pytest.raises(DataError) as err:
    data.check(spec(eval_split='validation'))
  assert str(err.value) == ("split 'validation' does not exist in the embedded 'digits' dataset: "
                            "use train_split='train' and eval_split='test'.")
  assert err.value.choices == ()


def test_num_classes_is_checked_against_the_opened_dataset():
  run = resolve(config(num_classes=100, eval_batch_size=128))
  info = data.dataset_info(run.data)  # the pipeline itself reads the dataset's own classes
  assert (info.num_classes, info.num_train) == (10, 1437)
  with pytest.raises(DataError) as err:
    setup.check_against_dataset(run, info)
  assert str(err.value) == ("num_classes=100 but dataset 'digits' has 10 classes; set "
                            '--config.num_classes=10.')


def test_prepare_cli_without_tensorflow(tmp_path, capsys):
  from jax_resnet.data import __main__ as cli
  if importlib.util.find_spec('tensorflow') is not None:
    pytest.skip('tensorflow is installed: the missing-TensorFlow message cannot be shown')
  assert cli.main(['prepare', 'cifar10', '--data_dir', str(tmp_path)]) == 2
  assert 'pip install "jax-resnet-family[prepare]"' in capsys.readouterr().err


def test_worker_processes_give_the_same_batches():
  # Two workers: batches come round-robin from both, so their order is checked too.
  c = spec(augment='pad_crop_flip')
  expected = take(data.train_iterator(c), 3)
  it = data.train_iterator(spec(augment='pad_crop_flip', num_workers=2))
  data.set_iterator_state(it, {**data.get_iterator_state(it), 'step': 1})
  got = take(it, 2)
  it.close()
  for x, y in zip(expected[1:], got):
    assert np.array_equal(x['image'], y['image']) and np.array_equal(x['label'], y['label'])


def test_labels_outside_the_classes_are_refused_with_their_value():
  """An unlabelled split (TFDS's -1) or more classes than the head: refused at the first
  offending example, not counted as zero loss."""
  data_spec = DataSpec(dataset='digits', image_size=16, num_classes=5, batch_size=32,
                       eval_batch_size=100, eval_split='test', normalize='none')
  with pytest.raises(BadLabelError) as err:
    next(data.train_iterator(data_spec))
  assert re.fullmatch(r'label [5-9] is outside \[0, 5\): the split is unlabelled or has more '
                      r'classes than num_classes; train and evaluate on labelled splits whose '
                      r'classes match num_classes\.', str(err.value)), str(err.value)


def test_an_eval_split_that_does_not_exist_is_one_line_naming_those_that_do(monkeypatch):
  """A prepared dataset (faked: no download here) asked for a split it lacks."""
  from types import SimpleNamespace
  from jax_resnet.data import tfds_source
  info = SimpleNamespace(
      features={'image': SimpleNamespace(shape=(None, None, 3), encoding_format='png'),
                'label': SimpleNamespace(num_classes=10)},
      splits={'train': None, 'validation': None}, available_file_formats=lambda: ['array_record'])
  fake = SimpleNamespace(info=info, is_prepared=lambda: True, data_dir='/data/x', name='x',
                         version='1.0.0')
  monkeypatch.setattr(tfds_source, 'builder', lambda name, data_dir: fake)

  def data_source(name, split, **kwargs):
    if split not in info.splits:
      raise ValueError(f'Unknown split "{split}". Should be one of {list(info.splits)}.')
    return [0]

  tfds = tfds_source.import_tfds()
  monkeypatch.setattr(tfds, 'data_source', data_source)
  with pytest.raises(DataError) as err:
    tfds_source.tfds_sources('x', '', ('train', 'test'))
  assert str(err.value) == (
      "cannot read split 'test' of dataset 'x' (ValueError: Unknown split \"test\". Should be "
      "one of ['train', 'validation'].); available splits: ['train', 'validation']; set "
      "train_split / eval_split to one of them (TFDS slicing like 'train[:90%]' is allowed)")
