"""The inference layer (jax_resnet.inference) as a library: image files read as the published
transforms read them, weights through the one loader with the transform their record gives,
batched top-k classification with class names, and the transform as fields for export."""

import json

import numpy as np
import pytest
from PIL import Image

from jax_resnet import inference, weights
from jax_resnet.data import eval_record
from jax_resnet.errors import UserError
from jax_resnet.weights import loader

from test_weights import random_variables

# A grey gradient with structure in both directions, 8 bits per pixel.
_Y, _X = np.mgrid[0:300, 0:260]
GREY8 = ((_X * 255 // 259 + 60 * np.sin(_Y / 17.0)).clip(0, 255)).astype(np.uint8)
# The 8-bit path resizes in PIL's fixed-point uint8 arithmetic, the others in float: they differ
# by at most one level (measured: 0.01737), 1/255 over the smallest std (0.224) = 0.01751.
TOLERANCE = 1 / 255 / 0.224 + 1e-6


@pytest.fixture(scope='module')
def net(tmp_path_factory):
  variables = random_variables('resnet20', seed=3)
  path = weights.save_npz(tmp_path_factory.mktemp('net') / 'r20.npz', variables)
  return str(path), variables


def _save(path, seed, size=(40, 36)):
  pixels = np.random.RandomState(seed).randint(0, 255, size[::-1] + (3,), np.uint8)
  Image.fromarray(pixels).save(path)
  return str(path)


def _as_rgb8(tmp_path):
  path = tmp_path / 'grey8.png'
  Image.fromarray(np.stack([GREY8] * 3, -1)).save(path)
  return inference.read_image(str(path))


# Moved from tests/test_predict_images.py: it tests the reader, not the program.
@pytest.mark.parametrize('mode, pixels, suffix', [
    ('I;16', GREY8.astype(np.uint16) * 257, 'png'),        # 16-bit grey PNG
    ('I', GREY8.astype(np.int32) * 257, 'tif'),            # 32-bit integer TIFF, 16-bit range
    ('F', GREY8.astype(np.float32) / 255, 'tif'),          # float TIFF in [0, 1]
    ('L', GREY8, 'png'),                                    # 8-bit grey
])
def test_each_mode_reads_as_the_8_bit_picture(tmp_path, mode, pixels, suffix):
  path = tmp_path / f'picture.{suffix}'
  Image.fromarray(pixels).save(path)
  with Image.open(path) as image:
    assert image.mode == mode
  got, expected = inference.read_image(str(path)), _as_rgb8(tmp_path)
  assert got.shape == expected.shape == (224, 224, 3)
  assert float(np.max(np.abs(got - expected))) <= TOLERANCE
  assert (float(got.min()), float(got.max())) == pytest.approx(
      (float(expected.min()), float(expected.max())), abs=TOLERANCE)


# Moved from tests/test_predict_batches.py: it tests the reader, not the program.
def test_exif_orientation_is_not_applied_unless_asked(tmp_path):
  stored = np.random.RandomState(0).randint(0, 255, (36, 48, 3), np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # orientation: the stored image is shown rotated 90 degrees clockwise
  path = str(tmp_path / 'photo.png')
  Image.fromarray(stored).save(path, exif=exif)
  plain = str(tmp_path / 'plain.png')
  Image.fromarray(stored).save(plain)
  upright = str(tmp_path / 'upright.png')
  Image.fromarray(stored).transpose(Image.Transpose.ROTATE_270).save(upright)
  as_stored = inference.read_image(path, resize=32, crop=32)
  np.testing.assert_array_equal(as_stored, inference.read_image(plain, resize=32, crop=32))
  turned = inference.read_image(path, resize=32, crop=32, exif_transpose=True)
  np.testing.assert_array_equal(turned, inference.read_image(upright, resize=32, crop=32))
  assert not np.array_equal(turned, as_stored)


def test_an_unreadable_image_is_an_image_error_a_user_error(tmp_path):
  path = tmp_path / 'notes.png'
  path.write_text('not an image')
  with pytest.raises(inference.ImageError) as err:
    inference.check_image(str(path))
  assert isinstance(err.value, UserError) and not isinstance(err.value, ValueError)
  assert str(err.value) == (f'cannot read image {path}: cannot identify image file '
                            f"'{path}'")


def test_batches_give_what_one_image_at_a_time_gives(tmp_path, net):
  path, variables = net
  paths = [_save(tmp_path / f'{i}.png', i) for i in range(3)]
  classifier = inference.load_classifier(weights=path, model='resnet20')
  assert (classifier.model, classifier.class_names) == ('resnet20', [])
  batches = list(classifier.classify_files(paths, batch_size=2, top=3))
  assert [[p for p, _ in batch] for batch in batches] == [paths[:2], paths[2:]]
  for (name, predictions) in batches[0] + batches[1]:
    pixels = inference.read_image(name, resize=32, crop=32)  # resnet20's own input size
    row = inference.classify('resnet20', variables, pixels[None])[0]
    expected = inference.top_k(row, 3)
    assert [i for i, _ in predictions] == [i for i, _ in expected]
    np.testing.assert_allclose([p for _, p in predictions], [p for _, p in expected], atol=1e-5)
  assert classifier.class_name(7) == 'class 7'


def test_the_model_comes_from_the_tag_and_the_transform_from_its_record(tmp_path):
  tagged = weights.save_npz(tmp_path / 'tagged.npz', random_variables('resnet18', seed=1),
                            tag='resnet18.a1_in1k')
  planned = inference.plan(weights=str(tagged))
  assert planned.model == 'resnet18' and planned.found.model == 'resnet18'
  tag = weights.get_tag('resnet18.a1_in1k')
  assert inference.tag_transform('resnet18', str(tagged)) == dict(
      resize=tag.resize, crop=tag.crop, interpolation=tag.interpolation, mean=tag.mean,
      std=tag.std)
  with pytest.raises(inference.InferenceError) as err:
    inference.tag_transform('resnet50', str(tagged))
  assert str(err.value) == ('weight tag resnet18.a1_in1k is for resnet18, not resnet50; pass '
                            '--model resnet18 or another --tag.')
  with pytest.raises(inference.InferenceError) as err:
    inference.plan()
  assert str(err.value) == 'pass --weights FILE, or --tag TAG to use a published file.'
  with pytest.raises(inference.InferenceError) as err:
    inference.check_model('resnet_20')
  assert str(err.value).startswith("Unknown model 'resnet_20'. Did you mean resnet20")


def test_class_names_come_from_the_workdir_the_source_or_imagenet(tmp_path):
  found = loader.Pretrained('resnet20', {}, 'x', 'npz', class_names=('a', 'b', 'c'))
  assert inference.class_names_for(found, None, 3) == ['a', 'b', 'c']
  (tmp_path / 'class_names.json').write_text(json.dumps(['x', 'y', 'z']))
  assert inference.class_names_for(found, str(tmp_path), 3) == ['x', 'y', 'z']
  plain = loader.Pretrained('resnet18', {}, 'x', 'npz')
  assert inference.class_names_for(plain, None, 1000) == weights.imagenet_classes()
  assert inference.class_names_for(plain, None, 10) == []
  with pytest.raises(inference.InferenceError) as err:
    inference.class_names_for(found, str(tmp_path), 4)
  assert str(err.value) == (f'{tmp_path / "class_names.json"} is not a list of 4 class names '
                            '(strings), one per class of the head; restore it from the run.')


def test_an_eval_record_becomes_the_fields_export_bakes_in():
  mean_image = np.full((16, 16, 3), 0.25, np.float32)
  records = [eval_record.EvalPreprocessing(16, 1.0, 'mean_std', (0.5,) * 3, (0.25,) * 3),
             eval_record.EvalPreprocessing(16, 1.0, 'none'),
             eval_record.EvalPreprocessing(16, 1.0, 'per_pixel_mean', mean_image=mean_image)]
  fields = [inference.of_eval_record(record) for record in records]
  assert [(f.resize, f.crop, f.mean, f.std, f.normalize) for f in fields] == [
      (16, 16, (0.5,) * 3, (0.25,) * 3, 'mean_std'),
      (16, 16, (0.0,) * 3, (1.0,) * 3, 'none'),
      (16, 16, (0.0,) * 3, (1.0,) * 3, 'per_pixel_mean')]
  np.testing.assert_array_equal(fields[2].subtracted, mean_image)
  np.testing.assert_array_equal(fields[0].subtracted, np.float32((0.5,) * 3))
