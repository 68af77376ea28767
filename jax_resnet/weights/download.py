"""Fetching published weights files: the Hugging Face Hub through `huggingface_hub`, other hosts
(download.pytorch.org, the BiT bucket) by plain HTTPS into our cache.

Environment (read at each call):
  JAX_RESNET_CACHE    where non-Hub files are kept (default: <user cache>/jax_resnet), one file
                      per URL at <cache>/<host>/<path>, with its record `.<name>.json` beside it
                      (`cache_check`: the URL it was fetched from, a mirror's included; size;
                      SHA-256).
  JAX_RESNET_MIRROR   a base URL that replaces scheme and host of non-Hub URLs, paths kept
                      (https://download.pytorch.org/models/x.pth -> <mirror>/models/x.pth).
  JAX_RESNET_OFFLINE  1: cached files only (HF_HUB_OFFLINE=1 means the same for both).
  JAX_RESNET_DOWNLOAD_TIMEOUT, JAX_RESNET_DOWNLOAD_MIN_RATE: each download's deadline
                      (`transfer`).
  HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN: as huggingface_hub reads them.

A cached file is checked again each time it is read (`cache_check`): one that no longer matches
is deleted and fetched again (offline: refused, naming the file). A download goes to a locked
temporary file in the cache folder (stale ones, of killed processes, are removed by the next
call), renamed into place only when complete and verified: the body announced its length, fits
the free space, begins as a file of its kind, reached its length within the deadline; its
SHA-256 matches the prefix that torchvision's file names carry ('resnet50-11ad3fa6.pth', as
torch.hub checks) and, for Hub files, the blob's name.
"""

import contextlib
import errno
import logging
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from jax_resnet.utils import created_file_mode
from jax_resnet.weights import cache_check, transfer
from jax_resnet.weights.transfer import CacheError, DownloadError

__all__ = ['CacheError', 'DownloadError', 'cache_dir', 'cache_path', 'expected_sha256_prefix',
           'fetch_hub', 'fetch_url', 'mirrored', 'offline']

CACHE_ENV, MIRROR_ENV, OFFLINE_ENV = 'JAX_RESNET_CACHE', 'JAX_RESNET_MIRROR', 'JAX_RESNET_OFFLINE'
_CHUNK = 1 << 20
_DISK_FULL = (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))
expected_sha256_prefix = cache_check.expected_sha256_prefix
_log = logging.getLogger('jax_resnet')


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
  """Where the file at `url` is kept: <cache>/<host>/<path>, never outside the cache (a URL
  whose host or path has '.' or '..' parts is refused)."""
  parts = urllib.parse.urlsplit(url)
  segments = [parts.netloc] + [p for p in parts.path.split('/') if p]
  root = cache_dir()
  path = os.path.join(root, *segments)
  if (not parts.netloc or len(segments) < 2 or any(s in ('.', '..') for s in segments)
      or os.path.commonpath([root, os.path.normpath(path)]) != root):
    raise DownloadError(f'the URL {url!r} has no host and file name or steps out of its '
                        f'folder (. or ..); it cannot be kept in the cache {root}. Give the '
                        "file's plain https://host/path URL.", url)
  return path


def mirrored(url: str) -> str:
  """`url` with scheme and host replaced by JAX_RESNET_MIRROR's (its path prefix kept)."""
  mirror = os.environ.get(MIRROR_ENV, '').strip()
  if not mirror:
    return url
  return mirror.rstrip('/') + urllib.parse.urlsplit(url).path


def fetch_url(url: str, size: Optional[int] = None) -> str:
  """The local path of the file at `url`: cached (and still what was downloaded), or
  downloaded and verified now.

  Raises DownloadError (one line) when offline without a good cached copy, when the download
  fails, is too slow or stops early, or when the file is not of its kind or has another size or
  digest than recorded; CacheError when the cache cannot take it. Nothing is kept then."""
  path = cache_path(url)
  name = os.path.basename(path)
  if os.path.isfile(path):
    problem = _read_check(lambda: cache_check.problem_at_rest(url, path), path, url)
    if problem is None:
      return path
    if offline():
      raise DownloadError(
          f'the cached {path} is not the file of {url}: {problem}. Downloads are off '
          f'({OFFLINE_ENV} or HF_HUB_OFFLINE): delete it and fetch it again on a machine with '
          'network.', url, path)
    _log.warning('the cached %s is not the file of %s: %s; deleted, fetching it again.', path,
                 url, problem)
    with _cache_writes(os.path.dirname(path), url):
      cache_check.remove_entry(path)
  elif offline():
    raise DownloadError(
        f'{name} is not in the cache and downloads are off ({OFFLINE_ENV} or HF_HUB_OFFLINE); '
        f'fetch {url} on a machine with network and place it at {path}.', url, path)
  folder = os.path.dirname(path)
  source = mirrored(url)
  with _cache_writes(folder, url):
    os.makedirs(folder, exist_ok=True)
    cache_check.remove_stale_partials(folder, name)
    with cache_check.partial_file(folder, name) as (out, partial):
      digest, written = _download(source, out, name, folder, url)
      out.flush()
      _verify(url, path, written, digest, size)
      cache_check.write_record(path, url, source, written, digest)
      os.chmod(partial, created_file_mode())  # mkstemp's 0600 would ignore the umask
      os.replace(partial, path)
  return path


def _read_check(check, path: str, url: str):
  """check() (which reads the cached file at `path`), an unreadable file one CacheError."""
  try:
    return check()
  except OSError as error:
    raise CacheError(f'cannot read the cached {path}: {error.strerror or error}. Make it '
                     'readable, or delete it to fetch it again.', url, path) from None


class _cache_writes:
  """Turns an OSError of the cache folder (read-only, a file where a folder should be, no
  permission, a full disk) into one CacheError line naming the folder."""

  def __init__(self, folder: str, url: str):
    self.folder, self.url = folder, url

  def __enter__(self):
    return self

  def __exit__(self, kind, error, trace):
    if not isinstance(error, OSError) or isinstance(error, DownloadError):
      return False
    raise CacheError(_cache_problem(self.folder, error), self.url) from None


def _cache_problem(folder: str, error: OSError) -> str:
  reason = error.strerror or str(error)
  if error.errno in _DISK_FULL:
    return (f'the disk of the weights cache {folder} is full ({reason}): free space there, or '
            f'set {CACHE_ENV} (HF_HOME for Hub files) to a folder on a disk with room.')
  return (f'cannot write into the weights cache {folder}: {reason} ({error.filename or folder}).'
          f' Make it a writable folder, or set {CACHE_ENV} (HF_HOME for Hub files) to one.')


def _download(source: str, out, name: str, folder: str, url: str):
  """Streams `source` into the open file `out` with a progress bar, under a Deadline;
  (sha256 hex, bytes). Refuses a body without a length, one that would not fit the free space
  of `folder`, or one that does not begin as a file of its kind, before writing it."""
  import hashlib

  from tqdm.auto import tqdm
  deadline = transfer.Deadline(f'the download of {source}', url)
  deadline.request()
  sha, written, total = hashlib.sha256(), 0, None
  try:
    with urllib.request.urlopen(source, timeout=deadline.timeout_s) as response:
      total = _checked_length(response, source, folder, url)
      deadline.expect(total)
      with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, desc=name,
                leave=False) as bar:
        while chunk := response.read1(_CHUNK):
          if not written:
            transfer.check_kind(f'the download of {source}', name, chunk, url)
          deadline.check(len(chunk))
          _write(out, chunk, folder, url)
          sha.update(chunk)
          written += len(chunk)
          bar.update(len(chunk))
  except (urllib.error.URLError, OSError, ValueError) as error:
    if isinstance(error, DownloadError):
      raise
    reason = getattr(error, 'reason', None) or error
    raise DownloadError(f'cannot download {source}: {reason}; nothing was kept. Check the '
                        f'network or {MIRROR_ENV}, and run again.', url) from None
  if written != total:
    raise DownloadError(f'the download of {source} stopped after {written} of {total} bytes; '
                        'nothing was kept. Run again.', url)
  return sha.hexdigest(), written


def _checked_length(response, source: str, folder: str, url: str) -> int:
  length = response.headers.get('Content-Length')
  if not (length and length.strip().isdigit()):
    raise DownloadError(f'the download of {source}: the server sent no Content-Length, so a '
                        'body cut short could not be told from a whole one; nothing was kept. '
                        'Use a host or mirror that sends it.', url)
  total = int(length)
  free = shutil.disk_usage(folder).free
  if total > free:
    raise CacheError(f'the disk of the weights cache {folder} has {free / 1e6:.1f} MB free, '
                     f'{total / 1e6:.1f} MB needed for {os.path.basename(url)}: free space '
                     f'there, or set {CACHE_ENV} to a folder on a disk with room.', url)
  return total


def _write(out, chunk: bytes, folder: str, url: str):
  try:
    out.write(chunk)
  except OSError as error:  # the disk's fault, not the network's
    raise CacheError(_cache_problem(folder, error), url) from None


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
  checked against its blob name each time it is read, downloaded now (under a Deadline) if
  needed. With `optional`, None when the repository has no such file (the Hub says so, or its
  answer is cached), or when downloads are off and the cache does not hold it."""
  import huggingface_hub
  from huggingface_hub import constants
  url = f'hf-hub:{repo_id}/{filename}'
  # The endpoint and cache huggingface_hub read at import, re-read now (set later by a user).
  endpoint = os.environ.get('HF_ENDPOINT', constants.ENDPOINT).rstrip('/')
  cache = _hub_cache()
  cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=cache)
  if isinstance(cached, str) and os.path.isfile(cached):
    if _cached_hub_file_is_good(repo_id, filename, cached, url):
      return cached
    cached = None
  if optional and (cached is not None or offline()):  # a cached 'no such file', or no network
    return None
  if offline():
    raise DownloadError(
        f'{repo_id}/{filename} is not in the Hugging Face cache ({cache}) and downloads '
        f'are off ({OFFLINE_ENV} or HF_HUB_OFFLINE); on a machine with network run '
        f'`hf download {repo_id} {filename}` and copy the cache, or pass the file to '
        'jax_resnet.weights.load.', url)
  path = _hub_download(repo_id, filename, cache, endpoint, optional, url)
  if path is not None:
    _verify_hub_blob(repo_id, filename, path, url)
  return path


def _hub_download(repo_id, filename, cache, endpoint, optional, url) -> Optional[str]:
  import huggingface_hub
  from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
  what = f'the download of {filename} of {repo_id} from {endpoint}'
  try:
    with contextlib.suppress(OSError):
      cache_check.remove_stale_hub_temporaries(cache, repo_id)
    with transfer.hub_deadline(what, url):
      return huggingface_hub.hf_hub_download(repo_id, filename, cache_dir=cache,
                                             endpoint=endpoint)
  except DownloadError:
    raise
  except Exception as error:  # huggingface_hub raises many types (HTTP, OS, validation)
    absent = (isinstance(error, EntryNotFoundError)
              and not isinstance(error, LocalEntryNotFoundError))  # the Hub answered 'no file'
    if optional and absent:
      return None
    if isinstance(error, OSError) and error.errno in (*_DISK_FULL, errno.EROFS, errno.EACCES,
                                                       errno.EPERM, errno.ENOTDIR, errno.EEXIST):
      raise CacheError(_cache_problem(cache, error), url) from None
    text = ' '.join(str(error).split())[:300]
    raise DownloadError(f'cannot download {filename} of {repo_id} from {endpoint}: '
                        f'{type(error).__name__}: {text}', url) from None


def _hub_cache() -> str:
  """huggingface_hub's cache folder from the environment as it is now."""
  from huggingface_hub import constants
  if os.environ.get('HF_HUB_CACHE'):
    return os.path.expanduser(os.environ['HF_HUB_CACHE'])
  if os.environ.get('HF_HOME'):
    return os.path.join(os.path.expanduser(os.environ['HF_HOME']), 'hub')
  return constants.HF_HUB_CACHE


def _cached_hub_file_is_good(repo_id: str, filename: str, path: str, url: str) -> bool:
  """Whether the Hub cache's file still is its blob; a bad one is deleted (False), or refused
  offline naming the file to delete."""
  mismatch = _read_check(lambda: cache_check.hub_blob_mismatch(path), path, url)
  if mismatch is None:
    return True
  blob = os.path.realpath(path)
  problem = f'its {mismatch[0]} is {mismatch[1]}, its name {mismatch[2]}'
  if offline():
    raise DownloadError(
        f'the cached {filename} of {repo_id} ({blob}, in the Hugging Face cache) is corrupt: '
        f'{problem}. Downloads are off ({OFFLINE_ENV} or HF_HUB_OFFLINE): delete it and fetch '
        f'it again on a machine with network (`hf download {repo_id} {filename}`).', url)
  _log.warning('the cached %s of %s (%s) is corrupt: %s; deleted, fetching it again.', filename,
               repo_id, blob, problem)
  with _cache_writes(os.path.dirname(blob), url):
    for stale in {path, blob}:
      with contextlib.suppress(FileNotFoundError):
        os.remove(stale)
  return False


def _verify_hub_blob(repo_id: str, filename: str, path: str, url: str):
  """Checks a freshly downloaded Hub file against its blob name; deletes a file that differs."""
  mismatch = cache_check.hub_blob_mismatch(path)
  if mismatch is None:
    return
  kind, found, expected = mismatch
  for stale in {path, os.path.realpath(path)}:
    os.remove(stale)
  raise DownloadError(f'{filename} of {repo_id}: {kind} {found} found, {expected} '
                      'expected; the file is corrupt or altered and was deleted. Run again.',
                      url)
