"""The weights caches at rest: what a cached file must still be when it is read again, and the
temporary files a killed download leaves.

A file we download into JAX_RESNET_CACHE gets a record beside it, `.<name>.json`: the URL it
stands for, the URL it was fetched from (a mirror's, when one was set), its size and SHA-256.
Each read checks the file against its record, else against the SHA-256 prefix in its name
(torchvision's); a Hub blob against its name (the SHA-256 of an LFS file, the git blob SHA-1 of
a small one). Hashing is cheap beside loading the file (docs/weights.md), so every read hashes
the whole file: no shortcut by size and time, which a flipped bit keeps.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import tempfile
from typing import Optional

from jax_resnet.published import digest_in_name

_CHUNK = 1 << 20
_SHA256, _GIT_SHA1 = re.compile(r'[0-9a-f]{64}'), re.compile(r'[0-9a-f]{40}')


expected_sha256_prefix = digest_in_name  # the weight record's rule (WeightTag.sha256)


def sha256_of(path: str) -> str:
  sha = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      sha.update(chunk)
  return sha.hexdigest()


def _git_blob_sha1(path: str) -> str:
  """The git object name of the file's bytes, as the Hub names a small (non-LFS) file."""
  sha = hashlib.sha1(f'blob {os.path.getsize(path)}\0'.encode())
  with open(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      sha.update(chunk)
  return sha.hexdigest()


def record_path(path: str) -> str:
  folder, name = os.path.split(path)
  return os.path.join(folder, f'.{name}.json')


def read_record(path: str) -> Optional[dict]:
  """The record of a cached file ({'url', 'source', 'size', 'sha256'}); None if it has none
  (placed by hand) or it is unreadable."""
  try:
    with open(record_path(path), encoding='utf-8') as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def write_record(path: str, url: str, source: str, size: int, sha256: str):
  """Writes the record atomically (before the file is renamed into place, so a file never
  stands without the record of its download)."""
  folder, name = os.path.split(record_path(path))
  handle, temporary = tempfile.mkstemp(prefix=name, suffix='.new', dir=folder)
  try:
    with os.fdopen(handle, 'w', encoding='utf-8') as f:
      json.dump({'url': url, 'source': source, 'size': size, 'sha256': sha256}, f)
    os.replace(temporary, os.path.join(folder, name))
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(temporary)


def remove_entry(path: str):
  for stale in (path, record_path(path)):
    with contextlib.suppress(FileNotFoundError):
      os.remove(stale)


def problem_at_rest(url: str, path: str) -> Optional[str]:
  """Why the cached file at `path` is not the file of `url` any more (its size or SHA-256 is
  not its record's, or not the prefix its name carries); None when it checks out or nothing is
  known to check it against."""
  record = read_record(path)
  size = os.path.getsize(path)
  if record and record.get('url') == url:
    if isinstance(record.get('size'), int) and size != record['size']:
      return f'it is {size} bytes, {record["size"]} when downloaded (truncated or altered)'
    if isinstance(record.get('sha256'), str) and _SHA256.fullmatch(record['sha256']):
      found = sha256_of(path)
      if found != record['sha256']:
        return f'its SHA-256 is {found}, {record["sha256"]} when downloaded'
      return None
  expected = expected_sha256_prefix(url)
  if expected:
    found = sha256_of(path)
    if not found.startswith(expected):
      return (f'its SHA-256 begins {found[:len(expected)]}, not the {expected} its name '
              'carries (truncated or altered)')
  return None


def hub_blob_mismatch(path: str):
  """(digest kind, found, expected) when a Hub cache file is not the blob its name says (the
  SHA-256 of an LFS file, the git SHA-1 of a small one); None when it is, or when the cache
  keeps copies, not named blobs."""
  blob = os.path.realpath(path)
  expected = os.path.basename(blob)
  if _SHA256.fullmatch(expected):
    kind, found = 'SHA-256', sha256_of(blob)
  elif _GIT_SHA1.fullmatch(expected):
    kind, found = 'git SHA-1', _git_blob_sha1(blob)
  else:
    return None
  return None if found == expected else (kind, found, expected)


@contextlib.contextmanager
def partial_file(folder: str, name: str):
  """(open binary file, its path): a temporary `.<name>.<random>.partial` in `folder`, locked
  (flock) for as long as this process lives, removed on the way out. Created under another name
  and renamed once locked, so `remove_stale_partials` never sees it unlocked."""
  handle, fresh = tempfile.mkstemp(prefix=f'.{name}.', suffix='.new', dir=folder)
  partial = fresh[:-len('.new')] + '.partial'
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(fresh, partial)
    with os.fdopen(handle, 'wb') as out:
      handle = None
      yield out, partial
  finally:
    if handle is not None:
      os.close(handle)
    for leftover in (fresh, partial):
      with contextlib.suppress(FileNotFoundError):
        os.remove(leftover)


def remove_stale_partials(folder: str, name: str) -> int:
  """Removes the `.partial` files of `name` that no live process holds (left by kill -9 or
  SIGTERM: the lock dies with its process); the number removed."""
  removed = 0
  for stale in glob.glob(os.path.join(glob.escape(folder), f'.{glob.escape(name)}.*.partial')):
    try:
      handle = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
      continue
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a download in progress
      os.close(handle)
      continue
    with contextlib.suppress(FileNotFoundError):
      os.remove(stale)
      removed += 1
    os.close(handle)
  return removed


def remove_stale_hub_temporaries(cache: str, repo_id: str) -> int:
  """Removes huggingface_hub's `<etag>.<random>.incomplete` blobs of `repo_id` whose download
  lock (huggingface_hub's own `.locks/<repo>/<etag>.lock`) nobody holds; the number removed."""
  import filelock
  from huggingface_hub.file_download import repo_folder_name
  folder = repo_folder_name(repo_id=repo_id, repo_type='model')
  removed = 0
  for stale in glob.glob(os.path.join(glob.escape(cache), folder, 'blobs', '*.incomplete')):
    etag = os.path.basename(stale).split('.', 1)[0]
    lock_path = os.path.join(cache, '.locks', folder, f'{etag}.lock')
    if not os.path.exists(lock_path):
      continue  # huggingface_hub creates the lock before the temporary: not ours to judge
    try:
      with filelock.FileLock(lock_path, timeout=0):
        os.remove(stale)
        removed += 1
    except (filelock.Timeout, OSError):
      continue
  return removed
