"""dataset='folder:PATH': the listing (as torchvision's ImageFolder), the held-out split and its
record, num_classes from the folder, every bad input refused in one line before anything is
written (skip_unreadable counts instead), the image modes, and a short training run."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jax_resnet as jr
from jax_resnet import data
from jax_resnet.config import resolve
from jax_resnet.data import folder, pipeline, pixels, transforms
from jax_resnet.errors import ConfigError, DataError, UserError
from jax_resnet.training import data_records
from image_folders import (CLASSES, make_folder, shape_image, write_decompression_bomb,
                           write_not_an_image, write_truncated_jpeg)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _fresh_listings():
  """The pipeline caches an opened dataset per spec; these tests change folders in place."""
  pipeline._resolve_cached.cache_clear()
  yield
  pipeline._resolve_cached.cache_clear()


def _spec(path, **overrides):
  return data.DataSpec(**{**dict(dataset=f'folder:{path}', image_size=16, batch_size=6,
                                 eval_batch_size=6, normalize='none'), **overrides})


def _config(path, **overrides):
  c = jr.load_config('default')
  c.update(dict(dataset=f'folder:{path}', num_classes=0, batch_size=8, eval_batch_size=8,
                normalize='none', progress_bar=False), **overrides)
  return c


def test_the_listing_is_imagefolders(tmp_path):
  """Same classes, same (file, class index) pairs as torchvision's ImageFolder, nested
  folders and upper-case extensions included; other files and hidden ones left out."""
  datasets = pytest.importorskip('torchvision.datasets')
  make_folder(tmp_path, per_class=5)
  os.makedirs(tmp_path / 'square' / 'more')
  shape_image('square', np.random.default_rng(3)).save(tmp_path / 'square' / 'more' / 'X.JPG')
  (tmp_path / 'circle' / 'notes.txt').write_text('not listed')
  (tmp_path / 'circle' / '.hidden.png').write_bytes(b'')
  listing = folder.list_folder(f'folder:{tmp_path}')
  reference = datasets.ImageFolder(str(tmp_path))
  assert listing.class_names == tuple(reference.classes) == CLASSES
  ours = sorted(listing.train + listing.eval)
  theirs = sorted((os.path.relpath(p, tmp_path), c) for p, c in reference.samples
                  if not os.path.basename(p).startswith('.'))
  assert ours == theirs and len(ours) == 16


def test_the_held_out_split_is_stratified_seeded_and_sized(tmp_path):
  make_folder(tmp_path / 'a', per_class=20)
  make_folder(tmp_path / 'b', per_class=20, seed=5)  # other pixels, same file names
  first, again = (folder.list_folder(f'folder:{tmp_path / name}') for name in 'ab')
  assert first.held_out and [e[1] for e in first.eval] == [0, 0, 1, 1, 2, 2]  # 10% a class
  assert first.eval == again.eval and first.train == again.train  # the names decide, seeded
  assert not set(first.eval) & set(first.train) and len(first.train) == 54
  sized = folder.list_folder(f'folder:{tmp_path / "a"}', holdout_size=9)
  assert np.bincount([e[1] for e in sized.eval]).tolist() == [3, 3, 3]


def test_train_and_val_folders_are_used_as_they_are(tmp_path):
  make_folder(tmp_path / 'train', per_class=4)
  make_folder(tmp_path / 'val', per_class=2, classes=CLASSES[:2])  # a class may lack val images
  listing = folder.list_folder(f'folder:{tmp_path}')
  assert not listing.held_out and listing.class_names == CLASSES
  assert listing.eval == (('val/circle/000.jpg', 0), ('val/circle/001.png', 0),
                          ('val/square/000.jpg', 1), ('val/square/001.png', 1))
  assert len(listing.train) == 12 and all(p.startswith('train/') for p, _ in listing.train)


def test_num_classes_comes_from_the_folder_unless_set(tmp_path):
  make_folder(tmp_path, per_class=2)
  spec = resolve(_config(tmp_path))
  assert spec.model_kwargs['num_classes'] == spec.data.num_classes == 3
  assert spec.identity['num_classes'] == 3 and json.loads(spec.config_json)['num_classes'] == 3
  assert resolve(_config(tmp_path, num_classes=3)).data.num_classes == 3
  with pytest.raises(ConfigError) as error:
    resolve(_config(tmp_path, num_classes=10))
  assert str(error.value) == (
      f'Invalid config: num_classes=10 but folder:{tmp_path} has 3 class folders; set '
      "--config.num_classes=3 or 0 (the folder's count).")


def test_the_digits_name_their_classes_too():
  digits = resolve(jr.load_config('default')).data
  assert data.dataset_records(digits) == {'class_names.json': [str(d) for d in range(10)]}
  assert data.dataset_info(digits).class_names == tuple('0123456789')


def test_the_split_is_recorded_and_read_back_whatever_the_folder_gains(tmp_path):
  """What the trainer does around a run (training.data_records): the first start writes
  split.json and class_names.json, a resume reads split.json, so files added since stay out."""
  make_folder(tmp_path / 'photos', per_class=10)
  workdir = tmp_path / 'run'
  os.makedirs(workdir)
  spec = resolve(_config(tmp_path / 'photos'))
  first = data_records.with_recorded_split(spec, str(workdir))
  data_records.write(first, str(workdir), say=lambda *a, **k: None)
  written = json.loads((workdir / 'split.json').read_text())
  assert json.loads((workdir / 'class_names.json').read_text()) == list(CLASSES)
  assert len(written['train']) == 27 and len(written['eval']) == 3
  make_folder(tmp_path / 'photos', per_class=30, seed=9)  # 20 new files a class, 10 rewritten
  pipeline._resolve_cached.cache_clear()
  resumed = data_records.with_recorded_split(spec, str(workdir))
  info = data.dataset_info(resumed.data)
  assert (info.num_train, info.num_eval) == (27, 3)
  assert data.dataset_records(resumed.data)['split.json'] == written
  fresh = data.dataset_info(spec.data)  # without the record: the folder as it is now
  assert (fresh.num_train, fresh.num_eval) == (81, 9)
  os.remove(tmp_path / 'photos' / written['eval'][0][0])
  pipeline._resolve_cached.cache_clear()
  with pytest.raises(DataError) as error:
    data.dataset_info(resumed.data)
  assert str(error.value) == (
      f"1 image file(s) recorded in the workdir's split.json are missing: "
      f"{tmp_path / 'photos' / written['eval'][0][0]}: it is gone; remove or replace them, or "
      'set --config.skip_unreadable=True to train without them.')


def _bad_folder(root, case):
  """A folder with one kind of bad input; returns the one line training refuses with."""
  if case == 'empty':
    os.makedirs(root)
    return (f'Invalid config: {root} must hold one sub-folder of images per class, at least '
            f'two; it has none: a classifier needs two classes or more ({root}/<class '
            'name>/<image>).')
  if case == 'one class':
    make_folder(root, per_class=3, classes=('circle',))
    return (f'Invalid config: {root} must hold one sub-folder of images per class, at least '
            f'two; it has only one (circle/): a classifier needs two classes or more '
            f'({root}/<class name>/<image>).')
  make_folder(root, per_class=3)
  reasons = {'not an image': 'not an image file PIL can read',
             'truncated JPEG': 'the JPEG is truncated (no end-of-image marker)',
             'decompression bomb': (f'it declares 12000x12000 pixels, more than the '
                                    f'{Image.MAX_IMAGE_PIXELS} PIL allows (a decompression '
                                    'bomb?)')}
  name = {'decompression bomb': 'big.png'}.get(case, 'bad.jpg')
  writer = {'not an image': write_not_an_image, 'truncated JPEG': write_truncated_jpeg,
            'decompression bomb': write_decompression_bomb}
  if case == 'class with no readable file':
    os.makedirs(root / 'zebra')
    write_not_an_image(root / 'zebra' / 'bad.jpg')
    path, reason = root / 'zebra' / 'bad.jpg', reasons['not an image']
  else:
    path, reason = root / 'square' / name, reasons[case]
    writer[case](path)
  return (f'1 image file(s) cannot be read: {path}: {reason}; remove or replace them, or set '
          '--config.skip_unreadable=True to train without them.')


BAD_CASES = ('empty', 'one class', 'not an image', 'truncated JPEG', 'decompression bomb',
             'class with no readable file')


@pytest.mark.parametrize('case', BAD_CASES)
def test_bad_input_is_refused_before_training_and_leaves_nothing(tmp_path, case):
  line = _bad_folder(tmp_path / 'photos', case)
  with pytest.raises(UserError) as error:
    jr.train_and_evaluate(_config(tmp_path / 'photos'), str(tmp_path / 'run'))
  assert str(error.value) == line
  assert not os.path.exists(tmp_path / 'run')


def test_skip_unreadable_leaves_them_out_and_counts_them(tmp_path):
  for case in ('not an image', 'truncated JPEG', 'decompression bomb'):
    _bad_folder(tmp_path, case)
  info = data.dataset_info(_spec(tmp_path, skip_unreadable=True))
  assert [path for path, _ in info.skipped] == ['square/bad.jpg', 'square/big.png']
  assert info.num_train + info.num_eval == 9
  _bad_folder(tmp_path, 'class with no readable file')
  with pytest.raises(DataError) as error:
    data.dataset_info(_spec(tmp_path, skip_unreadable=True, num_classes=4))
  assert str(error.value) == (f'class folder(s) zebra in {tmp_path} hold no readable training '
                              'image (3 unreadable file(s) skipped); add images or remove the '
                              'folder(s).')


def test_the_cli_refuses_a_truncated_jpeg_in_one_line_and_writes_nothing(tmp_path):
  line = _bad_folder(tmp_path / 'photos', 'truncated JPEG')
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run(
      [sys.executable, '-m', 'jax_resnet', 'train', '--config', 'default',
       f'--config.dataset=folder:{tmp_path / "photos"}', '--config.num_classes=0',
       f'--workdir={tmp_path / "run"}'], cwd=ROOT, env=env, capture_output=True, text=True)
  assert (proc.returncode, proc.stderr.strip().splitlines()) == (2, [f'error: {line}'])
  assert not os.path.exists(tmp_path / 'run')


def _modes(root):
  """One file per format and PIL mode the folder reader takes; {name: expected pixels}."""
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
  images = {
      'rgb.png': Image.fromarray(rgb), 'grey.bmp': Image.fromarray(rgb[..., 0]),
      'rgba.webp': Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
      'cmyk.tiff': Image.fromarray(rgb).convert('CMYK'),
      'palette.gif': Image.fromarray(rgb).convert('P'),
      'deep.png': Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)),
  }
  expected = {}
  for name, image in images.items():
    path = root / name
    if name.endswith('.gif'):  # two frames: the first is read
      image.save(path, save_all=True, append_images=[Image.new('P', image.size)])
    else:
      image.save(path, **({'lossless': True} if name.endswith('.webp') else {}))
    with Image.open(path) as reread:
      expected[name] = pixels.rgb_pixels(reread)
  return expected


def test_every_format_and_mode_reads_as_predict_reads_it(tmp_path):
  expected = _modes(tmp_path)
  for name, want in expected.items():
    got = np.asarray(folder.open_image(str(tmp_path / name)))
    np.testing.assert_array_equal(got, want, err_msg=name)
    assert got.shape == (12, 10, 3)
  # a GIF's first frame (the second is black), with its palette's colours
  with Image.open(tmp_path / 'palette.gif') as gif:
    assert gif.n_frames == 2
    np.testing.assert_array_equal(expected['palette.gif'], np.asarray(gif.convert('RGB')))
  assert expected['palette.gif'].max() > 0
  assert expected['deep.png'].dtype == np.float32
  np.testing.assert_allclose(expected['deep.png'][..., 1],
                             np.asarray(Image.open(tmp_path / 'deep.png')) / 65535, rtol=1e-6)
  np.testing.assert_array_equal(expected['grey.bmp'][..., 2], np.asarray(
      Image.open(tmp_path / 'grey.bmp')))


def test_eval_takes_the_weight_tags_centre_crop(tmp_path):
  c = _config(tmp_path, model='resnet50', image_size=32, dataset='digits', num_classes=10,
              init_tag='resnet50.tv2_in1k', augment='inception')
  spec = resolve(c).data
  assert (spec.eval_crop_fraction, spec.eval_interpolation) == (224 / 232, 'bilinear')
  c.update(model='resnet50d', init_tag='resnet50d.ra2_in1k')  # a timm tag: bicubic
  timm_tag = jr.weights.get_tag('resnet50d.ra2_in1k')
  spec = resolve(c).data
  assert (spec.eval_crop_fraction, spec.eval_interpolation) == (
      timm_tag.crop / timm_tag.resize, 'bicubic')
  ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (48, 1, 3))
  pre = transforms.Preprocess(16, 'inception', 4, transforms.Normalizer(),
                              eval_crop_fraction=0.5)
  out = pre({'image': ramp, 'label': 0})['image']
  # the centre 24x24 of a 48x64 ramp: columns 20..43, shrunk to 16
  assert abs(float(out.mean()) * 255 - 31.5) < 0.6 and out.shape == (16, 16, 3)
  assert float(out[0, 0, 0]) * 255 < 22 and float(out[0, -1, 0]) * 255 > 41
  bicubic = dataclasses.replace(pre, eval_interpolation='bicubic')
  expected = np.asarray(Image.fromarray(ramp).resize((16, 16), Image.BICUBIC, box=(20, 12, 44, 36)))
  np.testing.assert_allclose(bicubic({'image': ramp, 'label': 0})['image'] * 255, expected,
                             atol=1e-3)


@pytest.mark.slow
def test_a_short_run_on_a_drawn_folder_learns_and_records_the_classes(tmp_path, capsys):
  make_folder(tmp_path / 'photos', per_class=30, size=32)
  c = _config(tmp_path / 'photos', image_size=16, augment='inception', batch_size=16,
              eval_batch_size=16, num_train_steps=60, learning_rate=0.05, warmup_epochs=0.0,
              log_every_steps=20, checkpoint_every_steps=1000, eval_every_steps=1000,
              normalize='mean_std')
  c.model_options.stage_sizes = (1, 1, 1)
  summary = jr.train_and_evaluate(c, str(tmp_path / 'run'))
  assert summary['eval_examples'] == 9
  assert summary['final_eval_top1'] >= 0.85
  assert json.loads((tmp_path / 'run' / 'class_names.json').read_text()) == list(CLASSES)
  record = json.loads((tmp_path / 'run' / 'split.json').read_text())
  assert sorted(p for p, _ in record['eval']) == sorted(
      p for p, _ in folder.list_folder(f'folder:{tmp_path / "photos"}').eval)
  # Resumed after the folder gained 30 images a class: the recorded files, nothing else.
  make_folder(tmp_path / 'photos', per_class=40, size=32, seed=1)
  pipeline._resolve_cached.cache_clear()
  capsys.readouterr()
  c.num_train_steps = 70
  summary = jr.train_and_evaluate(c, str(tmp_path / 'run'))
  assert (summary['steps'], summary['eval_examples']) == (70, 9)
  assert json.loads((tmp_path / 'run' / 'split.json').read_text()) == record
  assert (f'jax_resnet: folder:{tmp_path / "photos"}: 3 classes, 81 training and 9 eval images '
          '(files recorded in split.json).') in capsys.readouterr().out.splitlines()


def test_the_data_benchmark_times_both_pipelines_on_a_folder(tmp_path, capsys):
  pytest.importorskip('torchvision')
  from jax_resnet import benchmark
  make_folder(tmp_path / 'photos', per_class=4)
  code = benchmark.main(['--data', f'folder:{tmp_path / "photos"}', '--image-size', '16',
                         '--batch-size', '4', '--workers', '0', '--batches', '2',
                         '--warmup', '1', '--rounds', '2', '--json', str(tmp_path / 'r.json')])
  result = json.loads((tmp_path / 'r.json').read_text())
  assert code == 0 and result['ours']['files'] == 12 and result['workers'] == 0
  assert len(result['ours']['all_images_per_second']) == 2 == len(
      result['torch']['all_images_per_second'])
  assert result['ratio_ours_over_torch'] == pytest.approx(
      result['ours']['images_per_second'] / result['torch']['images_per_second'])
  assert capsys.readouterr().out.splitlines()[0] == (
      f"header check: 12 files in {result['ours']['header_check_seconds']:.2f} s "
      f"({result['ours']['header_check_ms_per_file']:.3f} ms a file)")
