"""predict's inputs: a mode without a known brightness scale is one line, and an .npz's tag is
checked from its header before it is read (that every mode reads to the brightness the 8-bit
picture has is the reader's test, tests/test_inference.py)."""

import numpy as np
import pytest
from PIL import Image

from jax_resnet import predict, weights


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
