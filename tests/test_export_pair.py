"""export writes its program and JSON as a pair: a full disk (a real tmpfs) is one line and
leaves no temporary, a failed JSON keeps the previous program, the JSON records the program's
SHA-256 and `export.load_exported` refuses any changed byte; files get the umask's mode."""

import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mounts

import jax_resnet as jr
from jax_resnet import export, weights

from test_weights import random_variables


@pytest.fixture(scope='module')
def exported():
  model = jr.create_model('resnet20')
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  return export.export_model(model, variables, 32), (model, variables)


@pytest.fixture
def tmpfs(tmp_path):
  with mounts.tmpfs(tmp_path / 'small', 'size=1m') as target:  # a resnet20 program is ~1.1 MB
    yield target


@pytest.fixture
def tmpfs_4m(tmp_path):
  with mounts.tmpfs(tmp_path / 'four', 'size=4m') as target:
    yield target


def test_a_full_disk_is_one_line_and_leaves_nothing(tmpfs, tmp_path, capsys):
  npz = weights.save_npz(tmp_path / 'w.npz', random_variables('resnet20', seed=1))
  out = tmpfs / 'model.jaxexport'
  assert export.main(['--model', 'resnet20', '--weights', npz, '--image-size', '32',
                      '--out', str(out)]) == 2
  assert capsys.readouterr().err == (
      f'export: error: writing {out} failed ([Errno 28] No space left on device); free space '
      'and export again (the previous files, if any, are unchanged).\n')
  assert os.listdir(tmpfs) == []


def test_a_failed_json_keeps_the_previous_program(tmpfs_4m, exported):
  program, _ = exported
  out = str(tmpfs_4m / 'model.jaxexport')
  with open(out, 'wb') as f:
    f.write(b'the previous program')
  with open(out + '.json', 'w') as f:
    f.write('{"previous": true}')
  pages = math.ceil(len(bytes(program.serialize())) / 4096)
  stat = os.statvfs(tmpfs_4m)
  with open(tmpfs_4m / 'filler', 'wb') as f:  # room for the program's pages, none for the JSON
    f.write(b'\0' * (stat.f_bavail * stat.f_frsize - pages * 4096))
  with pytest.raises(export.ExportError) as caught:
    export.write_artefact(out, program, {'model': 'resnet20'})
  assert str(caught.value) == (
      f'writing {out}.json failed ([Errno 28] No space left on device); free space and export '
      'again (the previous files, if any, are unchanged).')
  assert open(out, 'rb').read() == b'the previous program'
  assert open(out + '.json').read() == '{"previous": true}'
  assert sorted(os.listdir(tmpfs_4m)) == ['filler', 'model.jaxexport', 'model.jaxexport.json']


def test_an_empty_out_or_a_folder_for_the_json_is_refused(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'w.npz').write_bytes(b'')
  assert export.main(['--model', 'resnet20', '--weights', 'w.npz', '--image-size', '32',
                      '--out', '']) == 2
  assert capsys.readouterr().err == 'export: error: --out is empty; name the program file to ' \
                                    'write.\n'
  (tmp_path / 'm.jaxexport.json').mkdir()
  assert export.main(['--model', 'resnet20', '--weights', 'w.npz', '--image-size', '32',
                      '--out', 'm.jaxexport']) == 2
  assert capsys.readouterr().err == (
      'export: error: --out m.jaxexport: m.jaxexport.json, where its JSON goes, is a '
      'directory.\n')
  assert sorted(os.listdir(tmp_path)) == ['m.jaxexport.json', 'w.npz']


def test_the_loader_checks_the_programs_sha256(tmp_path, exported):
  program, (model, variables) = exported
  out = str(tmp_path / 'model.jaxexport')
  export.write_artefact(out, program, {'model': 'resnet20'})
  data = open(out, 'rb').read()
  meta = json.load(open(out + '.json'))
  assert meta['program_sha256'] == hashlib.sha256(data).hexdigest()
  assert meta['program_bytes'] == len(data)
  loaded, loaded_meta = export.load_exported(out)
  images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(loaded.call(images)),
                                np.asarray(program.call(images)))
  assert loaded_meta == meta
  for offset in (0, len(data) // 3, len(data) - 1):
    flipped = bytearray(data)
    flipped[offset] ^= 0x01
    with open(out, 'wb') as f:
      f.write(flipped)
    with pytest.raises(export.ExportError) as caught:
      export.load_exported(out)
    assert str(caught.value) == (
        f'{out} does not match the SHA-256 recorded in {out}.json (changed or damaged since it '
        'was written): export it again.')


@pytest.mark.parametrize('umask', [0o022, 0o027])
def test_files_get_the_mode_the_umask_gives(tmp_path, exported, umask):
  program, _ = exported
  out = str(tmp_path / 'model.jaxexport')
  previous = os.umask(umask)
  try:
    export.write_artefact(out, program, {'model': 'resnet20'})
  finally:
    os.umask(previous)
  assert [os.stat(p).st_mode & 0o777 for p in (out, out + '.json')] == [0o666 & ~umask] * 2


def test_a_downloaded_file_gets_the_mode_the_umask_gives(tmp_path, monkeypatch):
  from jax_resnet.weights import download
  from weights_server import WeightsServer
  monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('NO_PROXY', '127.0.0.1')
  monkeypatch.setenv('no_proxy', '127.0.0.1')
  monkeypatch.delenv(download.MIRROR_ENV, raising=False)
  monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
  previous = os.umask(0o022)
  try:
    with WeightsServer() as server:
      # A body that begins as a torch zip, so the download's kind check lets it in.
      body = b'PK\x03\x04' + b'\x01' * 996
      server.files['/models/weights.bin'] = body
      path = download.fetch_url(f'{server.url}/models/weights.bin')
  finally:
    os.umask(previous)
  assert open(path, 'rb').read() == body
  assert os.stat(path).st_mode & 0o777 == 0o644
