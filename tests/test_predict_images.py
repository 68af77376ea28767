"""predict's inputs and output: its top-5 lines per image, its one-line errors (a missing or
unreadable image, a missing weights file, a video model, a decompression bomb), a mode without
a known brightness scale, and an .npz's tag checked from its header before it is read (that
every mode reads to the brightness the 8-bit picture has is the reader's test,
tests/test_inference.py)."""

import numpy as np
import pytest
from PIL import Image

from jax_resnet import predict, weights
from test_weights import random_variables


@pytest.mark.parametrize('pixels, message', [
    (np.full((40, 40), 70000, np.int32),
     'its I integer pixels span 70000..70000, beyond 16 bits, so no brightness scale is known: '
     'save it in 8 or 16 bits'),
    (np.full((40, 40), -3, np.int32),
     'its I integer pixels span -3..-3, beyond 16 bits, so no brightness scale is known: save it '
     'in 8 or 16 bits'),
    (np.full((40, 40), 200.0, np.float32),
     'its float pixels span 200..200; float images are read as brightness in [0, 1]: rescale it '
     'to [0, 1] or save it in 8 or 16 bits'),
])
def test_a_mode_without_a_known_scale_is_refused_in_one_line(tmp_path, capsys, pixels, message):
  path = tmp_path / 'odd.tif'
  Image.fromarray(pixels).save(path)
  assert predict.main(['--model', 'resnet50', '--weights', 'w.npz', str(path)]) == 2
  assert capsys.readouterr().err == f'predict: error: cannot read image {path}: {message}\n'


def test_an_npz_tag_is_checked_from_its_header_before_it_is_read(tmp_path, capsys):
  variables = {'params': {'head': {'kernel': np.zeros((2, 3), np.float32)}}}
  path = weights.save_npz(tmp_path / 'w.npz', variables)
  with np.load(path) as data:
    members = dict(data)
  # A million empty strings compress to a few kB and would take 4 MB (100M: 400 MB) to read.
  members['__tag__'] = np.zeros(10**6, '<U1')
  np.savez_compressed(path, **members)
  with pytest.raises(weights.WeightsFileError) as err:
    weights.read_tag(path)
  expected = (f"{path}: __tag__ declares shape (1000000,) of <U1, not one string of at most 256 "
              "characters (what save_npz writes); the file is crafted or not ours.")
  assert str(err.value) == expected
  image = tmp_path / 'ok.png'
  Image.new('RGB', (300, 300)).save(image)
  assert predict.main(['--model', 'resnet18', '--weights', path, str(image)]) == 2
  assert capsys.readouterr().err == f'predict: error: {expected}\n'


def test_a_tag_written_by_save_npz_still_reads(tmp_path):
  variables = {'params': {'head': {'kernel': np.zeros((2, 3), np.float32)}}}
  path = weights.save_npz(tmp_path / 'w.npz', variables, tag='resnet18.a1_in1k')
  assert weights.read_tag(path) == 'resnet18.a1_in1k'


def test_resized_size_truncates_like_torchvision():
  assert predict.resized_size(300, 451) == (256, 384)
  assert predict.resized_size(517, 333) == (397, 256)
  assert predict.resized_size(256, 256) == (256, 256)


def test_predict_cli_prints_top5_per_image(tmp_path, capsys):
  path = weights.save_npz(tmp_path / 'r18.npz', random_variables('resnet18', seed=4))
  images = []
  for i, size in enumerate(((320, 240), (200, 300))):
    images.append(str(tmp_path / f'img{i}.png'))
    Image.fromarray(np.full(size[::-1] + (3,), 40 * i + 60, np.uint8)).save(images[-1])
  assert predict.main(['--model', 'resnet18', '--weights', path] + images) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 12 and lines[0] == images[0] and lines[6] == images[1]
  names = weights.imagenet_classes()
  for line in lines[1:6] + lines[7:]:
    probability, rest = line.strip().split('  ', 1)
    name, index = rest.rsplit(' (', 1)
    assert name == names[int(index[:-1])] and 0.0 <= float(probability) <= 1.0
  probabilities = [float(line.split()[0]) for line in lines[1:6]]
  assert probabilities == sorted(probabilities, reverse=True)


def test_predict_cli_errors_are_one_line_exit_2(tmp_path, capsys):
  missing = tmp_path / 'nope.jpg'
  assert predict.main(['--model', 'resnet50', '--weights', 'w.npz', str(missing)]) == 2
  assert capsys.readouterr().err == (
      f'predict: error: cannot read image {missing}: No such file or directory\n')
  text = tmp_path / 'notes.jpg'
  text.write_text('not an image')
  assert predict.main(['--model', 'resnet50', '--weights', 'w.npz', str(text)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'predict: error: cannot read image {text}: cannot identify image file')
  assert err.count('\n') == 1
  image = tmp_path / 'ok.png'
  Image.new('RGB', (300, 300)).save(image)
  assert predict.main(['--model', 'resnet50', '--weights', str(tmp_path / 'w.npz'),
                       str(image)]) == 2
  assert capsys.readouterr().err == (
      f'predict: error: weights file {tmp_path / "w.npz"} not found.\n')
  assert predict.main(['--model', 'r3d_18', '--weights', 'w.npz', str(image)]) == 2
  assert capsys.readouterr().err == (
      'predict: error: r3d_18 classifies video clips; this tool classifies images.\n')


def test_predict_refuses_an_image_declaring_too_many_pixels_before_decoding(tmp_path, capsys):
  """A PNG whose header declares 40000x40000 (1.6 gigapixels) in a few hundred bytes."""
  import struct
  import zlib

  def chunk(kind, payload):
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload) & 0xFFFFFFFF))

  path = tmp_path / 'bomb.png'
  ihdr = struct.pack('>IIBBBBB', 40000, 40000, 8, 2, 0, 0, 0)
  path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
                   + chunk(b'IDAT', zlib.compress(b'\x00' * 1000)) + chunk(b'IEND', b''))
  assert predict.main(['--model', 'resnet50', '--weights', 'w.npz', str(path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'predict: error: cannot read image {path}: Image size (1600000000 '
                        'pixels) exceeds limit of ')
  assert err.count('\n') == 1
  width, height = 12000, 9000  # above PIL's limit, below twice it: PIL itself only warns
  with pytest.raises(predict.ImageError) as error:
    predict._check_pixels('big.png', width, height, Image.MAX_IMAGE_PIXELS)
  assert str(error.value) == (
      f'cannot read image big.png: it declares 12000x9000 pixels, more than the '
      f'{Image.MAX_IMAGE_PIXELS} PIL allows (PIL.Image.MAX_IMAGE_PIXELS); resize it first.')
