"""Fetching published weights files: the Hugging Face Hub through `huggingface_hub`, other hosts
(download.pytorch.org, the BiT bucket) by plain HTTPS into our cache.

Environment (read at each call):
  JAX_RESNET_CACHE    where non-Hub files are kept (default: <user cache>/jax_resnet), one file
                      per URL at <cache>/<host>/<path>.
  JAX_RESNET_MIRROR   a base URL that replaces scheme and host of non-Hub URLs, paths kept
                      (https://download.pytorch.org/models/x.pth -> <mirror>/models/x.pth).
  JAX_RESNET_OFFLINE  1: cached files only (HF_HUB_OFFLINE=1 means the same for both).
  HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN: as huggingface_hub reads them.

A cached file is returned without touching the network. A download goes to a temporary file in
the cache folder, renamed into place only when complete and verified: its length against the
server's Content-Length and the size recorded on the tag, its SHA-256 against the prefix that
torchvision's file names carry ('resnet50-11ad3fa6.pth', as torch.hub checks) and, for Hub
files stored by content (LFS), against the Hub's own SHA-256.
"""

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from jax_resnet.utils import created_file_mode
from jax_resnet.weights.trees import WeightsFileError

CACHE_ENV, MIRROR_ENV, OFFLINE_ENV = 'JAX_RESNET_CACHE', 'JAX_RESNET_MIRROR', 'JAX_RESNET_OFFLINE'
_CHUNK = 1 << 20
_TIMEOUT_S = 60
_SHA_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[^.]+$')  # torchvision/torch.hub's file names
_SHA256 = re.compile(r'[0-9a-f]{64}')


class DownloadError(WeightsFileError):
  """A weights file that could not be fetched or failed verification; `url` is the file's
  address (before any mirror), `path` where it belongs in the cache."""

  def __init__(self, message: str, url: str, path: Optional[str] = None):
    super().__init__(message)
    self.url, self.path = url, path


def _true(name: str) -> bool:
  return os.environ.get(name, '').strip().lower() in ('1', 'true', 'yes', 'on')


def offline() -> bool:
  """Whether only cached files may be used (JAX_RESNET_OFFLINE or HF_HUB_OFFLINE)."""
  return _true(OFFLINE_ENV) or _true('HF_HUB_OFFLINE')


def cache_dir() -> str:
  """JAX_RESNET_CACHE, else jax_resnet/ under XDG_CACHE_HOME or ~/.cache."""
  if os.environ.get(CACHE_ENV):
    return os.path.abspath(os.path.expanduser(os.environ[CACHE_ENV]))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'jax_resnet')


def cache_path(url: str) -> str:
  """Where the file at `url` is kept: <cache>/<host>/<path>."""
  parts = urllib.parse.urlsplit(url)
  return os.path.join(cache_dir(), parts.netloc, *[p for p in parts.path.split('/') if p])


def mirrored(url: str) -> str:
  """`url` with scheme and host replaced by JAX_RESNET_MIRROR's (its path prefix kept)."""
  mirror = os.environ.get(MIRROR_ENV, '').strip()
  if not mirror:
    return url
  return mirror.rstrip('/') + urllib.parse.urlsplit(url).path


def expected_sha256_prefix(url: str) -> Optional[str]:
  """The SHA-256 prefix a torchvision-style file name carries, if any."""
  found = _SHA_IN_NAME.search(url.rsplit('/', 1)[-1])
  return found[1] if found else None


def fetch_url(url: str, size: Optional[int] = None) -> str:
  """The local path of the file at `url`: cached, or downloaded and verified now.

  Raises DownloadError (one line) when offline without a cached copy, when the download fails
  or stops early, or when the file has another size or digest than recorded; nothing is kept
  then."""
  path = cache_path(url)
  if os.path.isfile(path):
    return path
  name = os.path.basename(path)
  if offline():
    raise DownloadError(
        f'{name} is not in the cache and downloads are off ({OFFLINE_ENV} or HF_HUB_OFFLINE); '
        f'fetch {url} on a machine with network and place it at {path}.', url, path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handle, partial = tempfile.mkstemp(prefix=f'.{name}.', suffix='.partial',
                                     dir=os.path.dirname(path))
  try:
    with os.fdopen(handle, 'wb') as out:
      digest, written = _download(mirrored(url), out, name)
    _verify(url, path, written, digest, size)
    os.chmod(partial, created_file_mode())  # mkstemp's 0600 would ignore the umask
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return path


def _download(source: str, out, name: str):
  """Streams `source` into the open file `out` with a progress bar; (sha256 hex, bytes)."""
  from tqdm.auto import tqdm
  sha = hashlib.sha256()
  written = 0
  try:
    with urllib.request.urlopen(source, timeout=_TIMEOUT_S) as response:
      length = response.headers.get('Content-Length')
      total = int(length) if length and length.isdigit() else None
      with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, desc=name,
                leave=False) as bar:
        while chunk := response.read(_CHUNK):
          out.write(chunk)
          sha.update(chunk)
          written += len(chunk)
          bar.update(len(chunk))
  except (urllib.error.URLError, OSError, ValueError) as error:
    reason = getattr(error, 'reason', None) or error
    raise DownloadError(f'cannot download {source}: {reason}; nothing was kept. Check the '
                        f'network or {MIRROR_ENV}, and run again.', source) from None
  if total is not None and written != total:
    raise DownloadError(f'the download of {source} stopped after {written} of {total} bytes; '
                        'nothing was kept. Run again.', source)
  return sha.hexdigest(), written


def _verify(url: str, path: str, written: int, digest: str, size: Optional[int]):
  name = os.path.basename(path)
  if size is not None and written != size:
    raise DownloadError(f'{name}: {written} bytes downloaded, {size} expected; the file was '
                        'refused and deleted. Run again, or check the mirror.', url, path)
  expected = expected_sha256_prefix(url)
  if expected and not digest.startswith(expected):
    raise DownloadError(f'{name}: SHA-256 {digest[:len(expected)]}... found, {expected}... '
                        'expected; the file is corrupt or altered and was deleted. Run again, '
                        'or check the mirror.', url, path)


def fetch_hub(repo_id: str, filename: str, optional: bool = False) -> Optional[str]:
  """The local path of `filename` in Hub repository `repo_id` (huggingface_hub's cache),
  downloaded now if needed; a file stored by content is checked against its SHA-256. With
  `optional`, None when the repository has no such file (the Hub says so, or its answer is
  cached), or when downloads are off and the cache does not hold it."""
  import huggingface_hub
  from huggingface_hub import constants
  from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
  url = f'hf-hub:{repo_id}/{filename}'
  # The endpoint and cache huggingface_hub read at import, re-read now (set later by a user).
  endpoint = os.environ.get('HF_ENDPOINT', constants.ENDPOINT).rstrip('/')
  cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=_hub_cache())
  if isinstance(cached, str) and os.path.isfile(cached):
    return cached
  if optional and (cached is not None or offline()):  # a cached 'no such file', or no network
    return None
  if offline():
    raise DownloadError(
        f'{repo_id}/{filename} is not in the Hugging Face cache ({_hub_cache()}) and downloads '
        f'are off ({OFFLINE_ENV} or HF_HUB_OFFLINE); on a machine with network run '
        f'`hf download {repo_id} {filename}` and copy the cache, or pass the file to '
        'jax_resnet.weights.load.', url)
  try:
    path = huggingface_hub.hf_hub_download(repo_id, filename, cache_dir=_hub_cache(),
                                           endpoint=endpoint)
  except Exception as error:  # huggingface_hub raises many types (HTTP, OS, validation)
    absent = (isinstance(error, EntryNotFoundError)
              and not isinstance(error, LocalEntryNotFoundError))  # the Hub answered 'no file'
    if optional and absent:
      return None
    text = ' '.join(str(error).split())[:300]
    raise DownloadError(f'cannot download {filename} of {repo_id} from {endpoint}: '
                        f'{type(error).__name__}: {text}', url) from None
  _verify_hub_blob(repo_id, filename, path, url)
  return path


def _hub_cache() -> str:
  """huggingface_hub's cache folder from the environment as it is now."""
  from huggingface_hub import constants
  if os.environ.get('HF_HUB_CACHE'):
    return os.path.expanduser(os.environ['HF_HUB_CACHE'])
  if os.environ.get('HF_HOME'):
    return os.path.join(os.path.expanduser(os.environ['HF_HOME']), 'hub')
  return constants.HF_HUB_CACHE


def _verify_hub_blob(repo_id: str, filename: str, path: str, url: str):
  """The Hub keeps LFS files under their SHA-256 (the blob's name): check it once, after the
  download, and delete a file that differs."""
  blob = os.path.realpath(path)
  expected = os.path.basename(blob)
  if not _SHA256.fullmatch(expected):
    return
  sha = hashlib.sha256()
  with open(blob, 'rb') as f:
    while chunk := f.read(_CHUNK):
      sha.update(chunk)
  if sha.hexdigest() != expected:
    for stale in {path, blob}:
      os.remove(stale)
    raise DownloadError(f'{filename} of {repo_id}: SHA-256 {sha.hexdigest()} found, {expected} '
                        'expected; the file is corrupt or altered and was deleted. Run again.',
                        url)
