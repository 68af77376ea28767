"""A loopback HTTP server standing in for the Hugging Face Hub and download hosts in tests:
serves in-memory files on 127.0.0.1, counts requests, can cut a response halfway, cut every
response (ignoring Range), drip a body slowly or send it without a length."""

import hashlib
import http.server
import os
import threading
import time

from jax_resnet.weights import download, transfer

COMMIT = 'c0ffee' * 6 + 'c0ff'  # 40 hex digits: the Hub's revision header


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'

  def log_message(self, *args):  # quiet
    pass

  def do_HEAD(self):
    self._answer(body=False)

  def do_GET(self):
    self._answer(body=True)

  def _answer(self, body: bool):
    server = self.server.owner
    with server.lock:
      server.requests += 1
    path = self.path.split('?', 1)[0]
    data = server.files.get(path)
    if data is None or server.refuse:
      self.send_response(404 if data is None else 503)
      self.send_header('Content-Length', '0')
      if data is None:  # as the Hub answers for a file its repository does not have
        self.send_header('X-Error-Code', 'EntryNotFound')
        self.send_header('X-Repo-Commit', COMMIT)
      self.end_headers()
      return
    self.send_response(200)
    if path in server.no_length:  # the body ends when the connection closes
      self.send_header('Connection', 'close')
      self.close_connection = True
    else:
      self.send_header('Content-Length', str(len(data)))
    etag = server.etags.get(path, hashlib.sha256(data).hexdigest())
    self.send_header('ETag', f'"{etag}"')
    self.send_header('X-Repo-Commit', COMMIT)
    self.end_headers()
    if not body:
      return
    if path in server.cut:  # half the body, then the connection drops; later requests fail
      self.wfile.write(data[:len(data) // 2])
      server.refuse = True
      self.close_connection = True
      return
    if path in server.cut_every:  # half the body, then the connection drops; Range ignored
      self.wfile.write(data[:len(data) // 2])
      self.close_connection = True
      return
    if path in server.drip:  # (bytes, seconds): that many bytes, then a pause, until stopped
      piece, pause = server.drip[path]
      for start in range(0, len(data), piece):
        if server.stopping.is_set():
          break
        self.wfile.write(data[start:start + piece])
        self.wfile.flush()
        time.sleep(pause)
      self.close_connection = True
      return
    self.wfile.write(data)


class WeightsServer:
  """`with WeightsServer() as server:` serves `server.files` (URL path -> bytes) at
  `server.url`; `etags` overrides a file's announced SHA-256, `cut` lists paths sent
  halfway (the server then answers 503), `cut_every` paths sent halfway on every request,
  `drip` maps a path to (bytes, seconds) sent at a time, `no_length` paths get no
  Content-Length."""

  def __init__(self):
    self.files, self.etags, self.cut = {}, {}, set()
    self.cut_every, self.drip, self.no_length = set(), {}, set()
    self.stopping = threading.Event()
    self.requests, self.refuse, self.lock = 0, False, threading.Lock()
    self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    self._httpd.owner = self
    self._httpd.daemon_threads = True
    self.url = f'http://127.0.0.1:{self._httpd.server_address[1]}'
    self._thread = threading.Thread(  # a short poll: stop() returns at once
        target=self._httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self.stop()

  def stop(self):
    self.stopping.set()  # ends the drips
    if self._thread.is_alive():
      self._httpd.shutdown()
      self._thread.join(timeout=10)
    self._httpd.server_close()


def isolate_downloads(monkeypatch, tmp_path):
  """Empty caches under `tmp_path` (ours and the Hub's), downloads on, no token, the default
  deadlines, and 127.0.0.1 reached without a proxy; returns `monkeypatch`. Hosts are pointed at
  a server afterwards by `point_hosts_at`."""
  for name in ('HF_HUB_OFFLINE', download.OFFLINE_ENV, 'HF_HUB_CACHE', 'HF_TOKEN',
               transfer.TIMEOUT_ENV, transfer.MIN_RATE_ENV):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
  monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('NO_PROXY', '127.0.0.1')
  monkeypatch.setenv('no_proxy', '127.0.0.1')
  return monkeypatch


def point_hosts_at(monkeypatch, url: str):
  """The Hub (HF_ENDPOINT) and every other download host (our mirror setting) at `url`."""
  monkeypatch.setenv('HF_ENDPOINT', url)
  monkeypatch.setenv(download.MIRROR_ENV, url)


def files_under(path) -> list:
  """Every file below `path`, relative to it, sorted."""
  return sorted(os.path.relpath(os.path.join(root, f), path)
                for root, _, names in os.walk(path) for f in names)
