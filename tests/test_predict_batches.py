"""predict over many images: fixed-size batches, each batch's results printed as it ends (a
file that fails to decode later does not hold back the earlier results), a progress bar on
stderr, folders read recursively in sorted order, bounded sizes, an unreadable --weights
folder as one line (EXIF orientation, not applied unless asked: tests/test_inference.py)."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jax_resnet import predict, weights

from test_weights import random_variables


@pytest.fixture(scope='module')
def net(tmp_path_factory):
  variables = random_variables('resnet20', seed=3)
  path = weights.save_npz(tmp_path_factory.mktemp('net') / 'r20.npz', variables)
  return path, variables


def _save(path, seed, size=(40, 36)):
  pixels = np.random.RandomState(seed).randint(0, 255, size[::-1] + (3,), np.uint8)
  Image.fromarray(pixels).save(path)
  return str(path)


def _expected(variables, path, top=2):
  pixels = predict.read_image(path, resize=32, crop=32)
  row = predict.classify('resnet20', variables, pixels[None])[0]
  return predict.top_k(row, top)


def _printed(out: str) -> list:
  """[(path, [(class, probability)])] of predict's output."""
  results = []
  for line in out.splitlines():
    if not line.startswith(' '):
      results.append((line, []))
    else:
      probability, index = re.fullmatch(r'\s+([\d.]+)\s+class \d+ \((\d+)\)', line).groups()
      results[-1][1].append((int(index), float(probability)))
  return results


def test_a_folder_is_read_recursively_in_sorted_order_batch_by_batch(tmp_path, net, capsys):
  path, variables = net
  folder = tmp_path / 'photos'
  (folder / 'b').mkdir(parents=True)
  (folder / 'a').mkdir()
  names = [_save(folder / 'b' / 'z.png', 1), _save(folder / 'a' / 'y.jpg', 2),
           _save(folder / 'x.png', 3), _save(folder / 'a' / 'w.bmp', 4)]
  (folder / 'notes.txt').write_text('not an image')
  assert predict.main(['--model', 'resnet20', '--weights', path, '--top', '2',
                       '--batch-size', '3', str(folder)]) == 0
  captured = capsys.readouterr()
  printed = _printed(captured.out)
  assert [p for p, _ in printed] == [names[3], names[1], names[0], names[2]]
  for name, predictions in printed:
    expected = _expected(variables, name)
    assert [i for i, _ in predictions] == [i for i, _ in expected]
    np.testing.assert_allclose([p for _, p in predictions], [p for _, p in expected], atol=1e-4)
  assert '4/4' in captured.err and '100%' in captured.err  # tqdm's bar, on stderr


def test_results_print_as_each_batch_ends(tmp_path, net, capsys):
  path, variables = net
  good = [_save(tmp_path / f'{i}.png', i) for i in range(3)]
  whole = open(_save(tmp_path / 'whole.png', 9), 'rb').read()
  broken = tmp_path / '3.png'  # its header reads; its pixels stop short
  broken.write_bytes(whole[:len(whole) // 2])
  assert predict.main(['--model', 'resnet20', '--weights', path, '--top', '1',
                       '--batch-size', '1', *good, str(broken)]) == 2
  captured = capsys.readouterr()
  assert [p for p, _ in _printed(captured.out)] == good
  errors = [line for line in captured.err.splitlines() if 'error' in line]
  assert errors == [f'predict: error: cannot read image {broken}: image file is truncated']


@pytest.mark.parametrize('option, message', [
    (['--resize', '200000'], '--resize must be in [1, 4096] (a shorter side in pixels), got '
                             '200000.'),
    (['--batch-size', '0'], '--batch-size must be in [1, 1024], got 0.'),
    (['--batch-size', '100000'], '--batch-size must be in [1, 1024], got 100000.'),
    (['--top', '0'], '--top must be >= 1, got 0.'),
    (['--weights', ''], '--weights is empty; name one or leave the option out.'),
])
def test_sizes_are_bounded_in_one_line(tmp_path, net, capsys, option, message):
  image = _save(tmp_path / 'a.png', 0)
  assert predict.main(['--model', 'resnet20', '--weights', net[0], *option, image]) == 2
  assert capsys.readouterr() == ('', f'predict: error: {message}\n')


def test_an_image_that_would_resize_beyond_the_bound_is_one_line(tmp_path, net, capsys):
  image = _save(tmp_path / 'strip.png', 0, size=(8, 20000))
  assert predict.main(['--model', 'resnet20', '--weights', net[0], '--resize', '4096',
                       image]) == 2
  captured = capsys.readouterr()
  assert captured.out == '' and captured.err.endswith(
      f'predict: error: cannot read image {image}: resizing its 8x20000 pixels to a shorter '
      'side of 4096 gives 4096x10240000, more than 67108864 pixels; crop it or pass a smaller '
      '--resize\n')


def test_an_unreadable_weights_folder_is_one_line(tmp_path, net):
  """A folder of mode 000, read by root without its override of file permissions (setpriv
  drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: root then reads as its owner would; the
  Python here lives under /root, which another user cannot reach)."""
  if os.geteuid() != 0 or not shutil.which('setpriv'):
    pytest.skip('needs root and setpriv to read as a user without the permission')
  image = _save(tmp_path / 'a.png', 0)
  locked = tmp_path / 'run'
  locked.mkdir()
  os.chmod(locked, 0o000)
  drop = '-dac_override,-dac_read_search'
  try:
    result = subprocess.run(
        ['setpriv', f'--bounding-set={drop}', f'--inh-caps={drop}', sys.executable, '-m',
         'jax_resnet.predict', '--model', 'resnet20', '--weights', str(locked), image],
        capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': os.getcwd()},
        timeout=300)
  finally:
    os.chmod(locked, 0o755)
  assert (result.returncode, result.stdout) == (2, '')
  assert result.stderr == f'predict: error: cannot read {locked}: Permission denied\n'


def test_an_internal_bug_keeps_its_traceback(tmp_path, net):
  """A ValueError from inside the program is a bug, not bad input: the program does not turn
  it into a one-line refusal (only UserError is), so its traceback shows."""
  image = _save(tmp_path / 'a.png', 0)
  code = ('import sys\n'
          'from jax_resnet import inference\n'
          'def bug(*args, **kwargs):\n'
          '  raise ValueError("an internal bug")\n'
          'inference.plan = bug\n'
          'from jax_resnet.__main__ import main\n'
          'sys.exit(main(sys.argv[1:]))\n')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, '-c', code, 'predict', '--model', 'resnet20', '--weights', net[0], image],
      capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': root}, timeout=300)
  assert (result.returncode, result.stdout) == (1, '')
  assert 'Traceback (most recent call last):' in result.stderr
  assert result.stderr.splitlines()[-1] == 'ValueError: an internal bug'
  assert 'predict: error' not in result.stderr
