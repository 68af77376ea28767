"""How long a download may take and what its body must be, for both fetch paths of
`weights.download` (our HTTPS reader and huggingface_hub's).

Every download has a deadline: JAX_RESNET_DOWNLOAD_TIMEOUT seconds (default 60; also the longest
wait for an answer or between two reads) plus its length at JAX_RESNET_DOWNLOAD_MIN_RATE kB/s
(default 100), counted from the first request, retries included; a file gets at most
`MAX_REQUESTS` GET requests per call. A body must announce its length and begin as a file of its
kind (a zip for .pth/.npz, a JSON header for .safetensors): a mirror's HTML error page is never
renamed into the cache.
"""

import contextlib
import importlib
import os
import threading
import time
from typing import Optional

from jax_resnet.weights.trees import WeightsFileError

TIMEOUT_ENV, MIN_RATE_ENV = 'JAX_RESNET_DOWNLOAD_TIMEOUT', 'JAX_RESNET_DOWNLOAD_MIN_RATE'
DEFAULT_TIMEOUT_S, DEFAULT_MIN_RATE_KBS = 60.0, 100.0
MAX_REQUESTS = 3  # GETs of one file in one call: the first try and two resumptions
# The first bytes of each kind of weights file: torch.save's zip (or the legacy pickle, protocol
# 2), numpy's savez (a zip), safetensors (an 8-byte little-endian header length, then '{').
_MAGIC = {'.pth': (b'PK\x03\x04', b'\x80\x02'), '.pt': (b'PK\x03\x04', b'\x80\x02'),
          '.bin': (b'PK\x03\x04', b'\x80\x02'), '.npz': (b'PK\x03\x04', b'PK\x05\x06')}


class DownloadError(WeightsFileError):
  """A weights file that could not be fetched or failed verification; `url` is the file's
  address (before any mirror), `path` where it belongs in the cache."""

  def __init__(self, message: str, url: str, path: Optional[str] = None):
    super().__init__(message)
    self.url, self.path = url, path


class CacheError(DownloadError):
  """The cache itself cannot take the file (a folder that cannot be written, a full disk): not
  the network's fault; the message says which folder."""


def _setting(name: str, default: float) -> float:
  text = os.environ.get(name, '').strip()
  if not text:
    return default
  try:
    value = float(text)
  except ValueError:
    value = float('nan')
  if not value > 0 or value == float('inf'):
    raise DownloadError(f'{name}={text!r} is not a positive number; unset it or give e.g. '
                        f'{name}={default:g}.', '')
  return value


def settings():
  """(timeout seconds, minimum rate bytes/s) from the environment as it is now."""
  return (_setting(TIMEOUT_ENV, DEFAULT_TIMEOUT_S),
          _setting(MIN_RATE_ENV, DEFAULT_MIN_RATE_KBS) * 1000)


class Deadline:
  """The clock of one file's download: `limit_s` = timeout + length / minimum rate, set when
  the length is known (`expect`); `check()` after every read raises DownloadError once past it,
  `request()` before every GET counts them."""

  def __init__(self, what: str, url: str):
    self.what, self.url = what, url
    self.timeout_s, self.min_rate = settings()
    self.start = time.monotonic()
    self.limit_s = self.timeout_s
    self.requests = self.received = 0

  def expect(self, length: Optional[int]):
    if length:
      self.limit_s = max(self.limit_s, self.timeout_s + length / self.min_rate)

  def remaining_s(self) -> float:
    return self.limit_s - (time.monotonic() - self.start)

  def request(self):
    self.requests += 1
    if self.requests > MAX_REQUESTS:
      raise DownloadError(
          f'{self.what}: the server cut the body {MAX_REQUESTS} times (or ignored the resume '
          f'requests); gave up after {MAX_REQUESTS} requests, {self.received} bytes. Check '
          'the mirror or the network, and run again.', self.url)
    self.check(0)

  def check(self, n: int):
    self.received += n
    if self.remaining_s() < 0:
      elapsed = time.monotonic() - self.start
      raise DownloadError(
          f'{self.what}: {self.received} bytes in {elapsed:.0f} s, under the minimum rate; gave '
          f'up at the deadline of {self.limit_s:.0f} s ({TIMEOUT_ENV}={self.timeout_s:g} s + '
          f'length / {MIN_RATE_ENV}={self.min_rate / 1000:g} kB/s). Check the network or the '
          'mirror, or raise them, and run again.', self.url)


def check_kind(what: str, name: str, head: bytes, url: str):
  """Refuses a body whose first bytes are not a file of `name`'s kind (an HTML page, say)."""
  extension = os.path.splitext(name)[1].lower()
  if extension == '.safetensors':
    fits = len(head) >= 9 and head[8:9] == b'{'
  else:
    fits = head.startswith(_MAGIC.get(extension, (b'',)))
  if not fits:
    shown = head[:16].decode('latin-1').encode('unicode_escape').decode()
    raise DownloadError(f'{what}: the server sent a body that is not a {extension} file (it '
                        f'begins {shown!r}; an error page?); nothing was kept. Check the '
                        'mirror, and run again.', url)


# --- huggingface_hub's downloads: its shared httpx client gets one response hook, which does
# nothing unless this thread is inside `hub_deadline`.

_local = threading.local()


class _WatchedStream:
  """A response body that reports each network read to the thread's Deadline."""

  def __init__(self, inner, deadline: Deadline):
    self._inner, self._deadline = inner, deadline

  def __iter__(self):
    for chunk in self._inner:
      self._deadline.check(len(chunk))
      yield chunk

  def close(self):
    self._inner.close()


def _on_request(request):
  deadline = getattr(_local, 'deadline', None)
  if deadline is not None and request.method == 'GET':
    deadline.request()  # raises before a GET past the bound is sent


def _on_response(response):
  deadline = getattr(_local, 'deadline', None)
  if deadline is None or response.request.method != 'GET' or response.status_code >= 300:
    return
  length = response.headers.get('Content-Length')
  total = response.headers.get('Content-Range', '').rpartition('/')[2] or length
  deadline.expect(int(total) if total and total.isdigit() else None)
  # httpx, or the httpx2 of newer huggingface_hub versions: its stream base class.
  package = importlib.import_module(type(response).__module__.split('.')[0])

  class Stream(_WatchedStream, package.SyncByteStream):
    pass
  response.stream = Stream(response.stream, deadline)


@contextlib.contextmanager
def hub_deadline(what: str, url: str):
  """Within this block, huggingface_hub's GETs in this thread run under one Deadline (with
  huggingface_hub >= 1.0, whose shared client is httpx's; before, its requests session has no
  such hooks and only its own timeouts apply)."""
  from huggingface_hub.utils import get_session
  client = get_session()
  hooks = getattr(client, 'event_hooks', None)
  if hooks is not None and _on_response not in hooks.get('response', []):
    client.event_hooks = {'request': [*hooks.get('request', []), _on_request],
                          'response': [*hooks.get('response', []), _on_response]}
  _local.deadline = Deadline(what, url)
  try:
    yield _local.deadline
  finally:
    _local.deadline = None
