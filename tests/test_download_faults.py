"""Downloads and caches under faults, for real: a loopback server that drips, cuts, ignores
Range, sends HTML or no length; bits flipped and files truncated in the caches; processes
killed mid-download; a read-only, a non-folder, a mode-555 and a full (1 MB tmpfs) cache; '..'
in a URL. Each is one line (or a fresh download), and nothing is left behind."""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mounts import tmpfs  # a real tmpfs (root only; skipped with the reason elsewhere)

from jax_resnet.weights import cache_check, download, transfer
from weights_server import WeightsServer, files_under, isolate_downloads, point_hosts_at

TORCHVISION = 'https://download.pytorch.org/models/'
BIT = 'https://storage.googleapis.com/bit_models/'
REPO = 'owner/weights'
HUB_PATH = f'/{REPO}/resolve/main/model.safetensors'


def _zip_like(size: int, seed: int = 0) -> bytes:
  """A body that begins as torch.save's and savez's zip files do."""
  return b'PK\x03\x04' + np.random.RandomState(seed).bytes(size - 4)


def _safetensors_like(size: int) -> bytes:
  return (2).to_bytes(8, 'little') + b'{}' + np.random.RandomState(1).bytes(size - 10)


def _torchvision_file(size: int = 4000):
  """(URL, server path, bytes) of a torchvision-style file whose name carries its digest."""
  data = _zip_like(size)
  name = f'resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth'
  return TORCHVISION + name, f'/models/{name}', data


@pytest.fixture
def env(tmp_path, monkeypatch):
  return isolate_downloads(monkeypatch, tmp_path)


@pytest.fixture
def server(env):
  with WeightsServer() as running:
    point_hosts_at(env, running.url)
    yield running


def _flip_a_bit(path: str, offset: int = 1000):
  """Flips one bit, keeping the size and the modification time."""
  stat = os.stat(path)
  with open(path, 'r+b') as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0x10]))
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# --- cached files are checked when read (issue 29, item 2)

def test_a_flipped_bit_in_a_cached_torchvision_file_is_fetched_again(server, caplog):
  url, served, data = _torchvision_file()
  server.files[served] = data
  path = download.fetch_url(url)
  _flip_a_bit(path)
  assert download.fetch_url(url) == path and server.requests == 2
  assert open(path, 'rb').read() == data
  assert f'the cached {path} is not the file of {url}: its SHA-256 is ' in caplog.text


def test_a_flipped_bit_offline_is_refused_naming_the_file_to_delete(server, env):
  url, served, data = _torchvision_file()
  server.files[served] = data
  path = download.fetch_url(url)
  with contextlib.suppress(FileNotFoundError):  # as if placed by hand: only the name's prefix
    os.remove(cache_check.record_path(path))
  _flip_a_bit(path)
  env.setenv(download.OFFLINE_ENV, '1')
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(url)
  found = cache_check.sha256_of(path)[:8]
  assert str(err.value) == (
      f'the cached {path} is not the file of {url}: its SHA-256 begins {found}, not the '
      f'{url[-12:-4]} its name carries (truncated or altered). Downloads are off '
      '(JAX_RESNET_OFFLINE or HF_HUB_OFFLINE): delete it and fetch it again on a machine with '
      'network.')
  assert os.path.exists(path)  # offline, the file is named, not deleted


def test_a_truncated_cache_entry_is_named_as_one_and_fetched_again(server, env):
  url, data = BIT + 'BiT-M-R50x1-ILSVRC2012.npz', _zip_like(5000)  # no digest in the name
  server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = data
  path = download.fetch_url(url)
  os.truncate(path, 3000)
  env.setenv(download.OFFLINE_ENV, '1')
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(url)
  assert str(err.value).startswith(
      f'the cached {path} is not the file of {url}: it is 3000 bytes, 5000 when downloaded '
      '(truncated or altered). Downloads are off')
  env.delenv(download.OFFLINE_ENV)
  assert download.fetch_url(url) == path and open(path, 'rb').read() == data
  assert server.requests == 2


def test_a_flipped_bit_in_a_cached_hub_blob_is_fetched_again_or_named_offline(server, env):
  data = _safetensors_like(5000)
  server.files[HUB_PATH] = data
  path = download.fetch_hub(REPO, 'model.safetensors')
  blob = os.path.realpath(path)
  assert os.path.basename(blob) == hashlib.sha256(data).hexdigest()
  _flip_a_bit(blob)
  env.setenv('HF_HUB_OFFLINE', '1')
  with pytest.raises(download.DownloadError) as err:
    download.fetch_hub(REPO, 'model.safetensors')
  message = str(err.value)
  assert message.startswith(f'the cached model.safetensors of {REPO} ({blob}, in the Hugging '
                            'Face cache) is corrupt: its SHA-256 is ') and '\n' not in message
  env.delenv('HF_HUB_OFFLINE')
  requests = server.requests
  assert download.fetch_hub(REPO, 'model.safetensors') == path
  assert open(path, 'rb').read() == data and server.requests > requests


# --- deadlines and bounded retries (item 5)

def _quick_deadline(env):
  env.setenv(transfer.TIMEOUT_ENV, '1')     # 1 s + the length at 1 kB/s
  env.setenv(transfer.MIN_RATE_ENV, '1')


def test_a_dripping_host_is_given_up_at_the_deadline(server, env, tmp_path):
  _quick_deadline(env)
  url, served, data = _torchvision_file(3000)   # deadline 1 + 3 s; the drip needs 15 s
  server.files[served] = data
  server.drip[served] = (10, 0.05)
  start = time.monotonic()
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(url)
  assert time.monotonic() - start < 8
  message = str(err.value)
  assert message.startswith(f'the download of {server.url}{served}: ') and message.endswith(
      'under the minimum rate; gave up at the deadline of 4 s (JAX_RESNET_DOWNLOAD_TIMEOUT=1 s '
      '+ length / JAX_RESNET_DOWNLOAD_MIN_RATE=1 kB/s). Check the network or the mirror, or '
      'raise them, and run again.')
  assert files_under(tmp_path / 'cache') == []


def test_a_dripping_hub_is_given_up_at_the_deadline(server, env, tmp_path):
  _quick_deadline(env)
  server.files[HUB_PATH] = _safetensors_like(3000)
  server.drip[HUB_PATH] = (10, 0.05)
  start = time.monotonic()
  with pytest.raises(download.DownloadError) as err:
    download.fetch_hub(REPO, 'model.safetensors')
  assert time.monotonic() - start < 8
  assert str(err.value).startswith(
      f'the download of model.safetensors of {REPO} from {server.url}: ')
  assert 'under the minimum rate; gave up at the deadline of 4 s' in str(err.value)
  assert not [f for f in files_under(tmp_path / 'hf') if 'blobs' in f]


def test_a_hub_mirror_that_ignores_range_and_cuts_bodies_gets_three_requests(server, tmp_path):
  server.files[HUB_PATH] = _safetensors_like(200_000)
  server.cut_every.add(HUB_PATH)
  guard = threading.Timer(30, server.stop)  # bounds the test where retries are unbounded
  guard.daemon = True
  guard.start()
  try:
    with pytest.raises(download.DownloadError) as err:
      download.fetch_hub(REPO, 'model.safetensors')
  finally:
    guard.cancel()
  assert str(err.value).startswith(
      f'the download of model.safetensors of {REPO} from {server.url}: the server cut the body '
      f'{transfer.MAX_REQUESTS} times (or ignored the resume requests); gave up after '
      f'{transfer.MAX_REQUESTS} requests')
  assert server.requests <= 1 + transfer.MAX_REQUESTS  # one HEAD, then the GETs
  assert not [f for f in files_under(tmp_path / 'hf') if 'blobs' in f]


def test_a_bad_deadline_setting_is_one_line(server, env):
  env.setenv(transfer.MIN_RATE_ENV, '0')
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(_torchvision_file()[0])
  assert str(err.value) == ("JAX_RESNET_DOWNLOAD_MIN_RATE='0' is not a positive number; unset "
                            'it or give e.g. JAX_RESNET_DOWNLOAD_MIN_RATE=100.')


_CHILD = ('import sys; from jax_resnet.weights import download; '
          'download.fetch_url(sys.argv[1])')


def _start_downloading(url):
  return subprocess.Popen(
      [sys.executable, '-c', _CHILD, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})


def _wait_for(folder, count):
  for _ in range(600):
    partials = sorted(folder.glob('*.partial')) if folder.exists() else []
    if len(partials) >= count:
      return partials
    time.sleep(0.1)
  raise AssertionError(f'{count} downloads never started writing')


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_download_leaves_a_partial_that_the_next_call_removes(server, tmp_path, sig):
  url, served, data = _torchvision_file(100_000)
  name = os.path.basename(served)
  server.files[served] = data
  server.drip[served] = (500, 0.1)   # 20 s: long enough to be killed mid-way
  folder = tmp_path / 'cache' / 'download.pytorch.org' / 'models'
  killed = _start_downloading(url)
  alive = None
  try:
    _wait_for(folder, 1)
    alive = _start_downloading(url)   # a second download, still running during the next call
    _wait_for(folder, 2)
    killed.send_signal(sig)
    assert killed.wait(timeout=30) == -sig
    del server.drip[served]
    assert download.fetch_url(url) == str(folder / name)
    # The dead process's partial is gone; the live one's is left alone (it holds its lock).
    assert len(list(folder.glob('*.partial'))) == 1
    assert cache_check.remove_stale_partials(str(folder), name) == 0
    alive.kill()
    alive.wait(timeout=30)
    assert cache_check.remove_stale_partials(str(folder), name) == 1
  finally:
    for child in (killed, alive):
      with contextlib.suppress(ProcessLookupError, AttributeError):
        child.kill()
  assert sorted(p.name for p in folder.iterdir()) == [f'.{name}.json', name]
  assert open(folder / name, 'rb').read() == data


def test_a_dead_hub_download_temporary_is_removed_once_its_lock_is_free(env, tmp_path):
  """huggingface_hub's `<etag>.<random>.incomplete` of a killed download: removed by the next
  call only when huggingface_hub's own lock for that blob is free (its holder has died)."""
  cache, etag = tmp_path / 'hf' / 'hub', hashlib.sha256(b'x').hexdigest()
  folder = 'models--owner--weights'  # huggingface_hub's folder of the model repository
  blobs, locks = cache / folder / 'blobs', cache / '.locks' / folder
  blobs.mkdir(parents=True)
  locks.mkdir(parents=True)
  (blobs / f'{etag}.0123abcd.incomplete').write_bytes(b'half')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); '
       'lock.acquire(); print(flush=True); time.sleep(60)', str(locks / f'{etag}.lock')],
      stdout=subprocess.PIPE, text=True)
  try:
    holder.stdout.readline()
    assert cache_check.remove_stale_hub_temporaries(str(cache), REPO) == 0  # a live download
  finally:
    holder.kill()
    holder.wait(timeout=30)
  assert cache_check.remove_stale_hub_temporaries(str(cache), REPO) == 1
  assert list(blobs.iterdir()) == []


# --- bodies refused before they reach the cache; the mirror recorded (item 6)

def test_an_html_page_is_not_cached_as_the_npz(server, tmp_path):
  page = b'<!DOCTYPE html><html><body>Service unavailable</body></html>' * 20
  server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = page
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(BIT + 'BiT-M-R50x1-ILSVRC2012.npz')
  assert str(err.value) == (
      f'the download of {server.url}/bit_models/BiT-M-R50x1-ILSVRC2012.npz: the server sent a '
      "body that is not a .npz file (it begins '<!DOCTYPE html><'; an error page?); nothing "
      'was kept. Check the mirror, and run again.')
  assert files_under(tmp_path / 'cache') == []


def test_a_body_without_a_length_is_refused(server, tmp_path):
  server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = _zip_like(3000)
  server.no_length.add('/bit_models/BiT-M-R50x1-ILSVRC2012.npz')
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(BIT + 'BiT-M-R50x1-ILSVRC2012.npz')
  assert str(err.value) == (
      f'the download of {server.url}/bit_models/BiT-M-R50x1-ILSVRC2012.npz: the server sent no '
      'Content-Length, so a body cut short could not be told from a whole one; nothing was '
      'kept. Use a host or mirror that sends it.')
  assert files_under(tmp_path / 'cache') == []


def test_the_record_says_which_mirror_served_the_file(server):
  url, data = BIT + 'BiT-M-R50x1-ILSVRC2012.npz', _zip_like(3000)
  server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = data
  path = download.fetch_url(url)
  assert cache_check.read_record(path) == {
      'url': url, 'source': f'{server.url}/bit_models/BiT-M-R50x1-ILSVRC2012.npz',
      'size': 3000, 'sha256': hashlib.sha256(data).hexdigest()}


# --- the cache folder (item 7)

def test_a_cache_that_is_a_file_is_one_line(server, env, tmp_path):
  (tmp_path / 'not-a-folder').write_text('x')
  env.setenv(download.CACHE_ENV, str(tmp_path / 'not-a-folder'))
  url, served, data = _torchvision_file()
  server.files[served] = data
  with pytest.raises(download.CacheError) as err:
    download.fetch_url(url)
  folder = tmp_path / 'not-a-folder' / 'download.pytorch.org' / 'models'
  assert str(err.value).startswith(f'cannot write into the weights cache {folder}: Not a '
                                   'directory (')
  assert str(err.value).endswith('Make it a writable folder, or set JAX_RESNET_CACHE '
                                 '(HF_HOME for Hub files) to one.')


def test_a_read_only_cache_is_one_line(server, env, tmp_path):
  with tmpfs(tmp_path / 'ro', 'size=1m,ro') as cache:
    env.setenv(download.CACHE_ENV, str(cache))
    url, served, data = _torchvision_file()
    server.files[served] = data
    with pytest.raises(download.CacheError) as err:
      download.fetch_url(url)
  assert str(err.value).startswith(
      f'cannot write into the weights cache {cache}/download.pytorch.org/models: Read-only '
      'file system (')


def test_a_mode_555_cache_is_one_line(server, tmp_path):
  cache = tmp_path / 'locked'
  cache.mkdir()
  cache.chmod(0o555)
  url, served, data = _torchvision_file()
  server.files[served] = data
  command = [sys.executable, '-c', 'import sys; from jax_resnet.weights import download\n'
             'try: download.fetch_url(sys.argv[1])\n'
             'except download.CacheError as e: print(e)', url]
  if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that allow it
    if not shutil.which('setpriv'):
      pytest.skip('needs setpriv to run without CAP_DAC_OVERRIDE as root')
    command = ['setpriv', '--inh-caps=-all', '--bounding-set=-dac_override,-dac_read_search',
               *command]
  done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                        env={**os.environ, download.CACHE_ENV: str(cache),
                             'PYTHONPATH': os.pathsep.join(sys.path)})
  assert done.stdout == (f'cannot write into the weights cache {cache}/download.pytorch.org/'
                         f'models: Permission denied ({cache}/download.pytorch.org). Make it a '
                         'writable folder, or set JAX_RESNET_CACHE (HF_HOME for Hub files) to '
                         'one.\n'), done.stderr
  assert list(cache.iterdir()) == []


def test_a_full_disk_is_named_as_the_disk_before_writing(server, env, tmp_path):
  with tmpfs(tmp_path / 'small', 'size=1m') as cache:
    env.setenv(download.CACHE_ENV, str(cache))
    url = BIT + 'BiT-M-R50x1-ILSVRC2012.npz'
    server.files['/bit_models/BiT-M-R50x1-ILSVRC2012.npz'] = _zip_like(2_000_000)
    with pytest.raises(download.CacheError) as err:
      download.fetch_url(url)
    assert files_under(cache) == []
  assert str(err.value) == (
      f'the disk of the weights cache {cache}/storage.googleapis.com/bit_models has 1.0 MB '
      'free, 2.0 MB needed for BiT-M-R50x1-ILSVRC2012.npz: free space there, or set '
      'JAX_RESNET_CACHE to a folder on a disk with room.')


def test_a_hub_download_that_fills_the_disk_is_named_as_the_disk(server, env, tmp_path):
  with tmpfs(tmp_path / 'small', 'size=1m') as home:
    env.setenv('HF_HOME', str(home))
    server.files[HUB_PATH] = _safetensors_like(2_000_000)
    with pytest.raises(download.CacheError) as err, pytest.warns(UserWarning):
      download.fetch_hub(REPO, 'model.safetensors')
    assert not [f for f in files_under(home) if 'blobs' in f]
  assert str(err.value) == (
      f'the disk of the weights cache {home}/hub is full (No space left on device): free space '
      'there, or set JAX_RESNET_CACHE (HF_HOME for Hub files) to a folder on a disk with room.')


@pytest.mark.parametrize('url', [
    TORCHVISION + '../../../../escaped.npz',
    'https://../escaped.npz',
    'https://download.pytorch.org/models/./../../escaped.npz'])
def test_dot_dot_in_a_url_cannot_write_outside_the_cache(server, tmp_path, url):
  import urllib.parse
  server.files[urllib.parse.urlsplit(url).path] = _zip_like(3000)  # as the mirror is asked
  with pytest.raises(download.DownloadError) as err:
    download.fetch_url(url)
  assert str(err.value) == (
      f'the URL {url!r} has no host and file name or steps out of its folder (. or ..); it '
      f"cannot be kept in the cache {tmp_path / 'cache'}. Give the file's plain "
      'https://host/path URL.')
  assert [f for f in files_under(tmp_path) if 'escaped' in f] == []
