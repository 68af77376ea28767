"""A loopback server standing in for the Hugging Face Hub in the sharing tests: the downloads
of `weights_server` (GET/HEAD /<repo>/resolve/main/<file>) and the endpoints huggingface_hub
calls for an upload: POST /api/repos/create, /api/validate-yaml,
/api/models/<repo>/preupload/<revision> (each file answered 'regular', sent inline in the
commit, or 'lfs' from `lfs_threshold` bytes up, as the Hub answers for large files),
/api/models/<repo>/commit/<revision> (ndjson: a header, then base64 files and LFS pointers).
Large files take git-LFS's basic transfer as huggingface_hub's legacy path makes it (the one it
takes without hf_xet, or with HF_HUB_DISABLE_XET): POST /<repo>.git/info/lfs/objects/batch
answers an upload and a verify action per object, PUT /lfs/<oid> receives the bytes (their
SHA-256 checked against the oid), POST /lfs/verify confirms them. A commit stores its files,
which the download side then serves. Authorization is checked against `token`;
`refuse_commits` answers 403 to commits."""

import base64
import hashlib
import json
import threading

from weights_server import COMMIT, WeightsServer, _Handler


class _HubHandler(_Handler):

  def _reply(self, status: int, payload: dict):
    body = json.dumps(payload).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(body)))
    if status >= 400:
      self.send_header('X-Error-Message', payload.get('error', ''))
    self.end_headers()
    self.wfile.write(body)

  def _body(self) -> bytes:
    """The request's body, sent with a Content-Length or chunked."""
    if self.headers.get('Transfer-Encoding', '').lower() != 'chunked':
      return self.rfile.read(int(self.headers.get('Content-Length') or 0))
    pieces = []
    while True:
      size = int(self.rfile.readline().split(b';', 1)[0], 16)
      if size == 0:
        while self.rfile.readline() not in (b'\r\n', b'\n', b''):  # trailers
          pass
        return b''.join(pieces)
      pieces.append(self.rfile.read(size))
      self.rfile.readline()  # the CRLF after each chunk

  def do_PUT(self):
    """git-LFS basic transfer: the object's bytes at the href the batch answer gave."""
    server = self.server.owner
    body = self._body()
    path = self.path.split('?', 1)[0]
    with server.lock:
      server.puts.append(path)
    oid = path.rsplit('/', 1)[-1]
    if not path.startswith('/lfs/') or hashlib.sha256(body).hexdigest() != oid:
      return self._reply(400, {'error': f'{path}: not an LFS object or not its SHA-256'})
    with server.lock:
      server.lfs_objects[oid] = body
    return self._reply(200, {})

  def _lfs_batch(self, server, repo: str, body: bytes):
    request = json.loads(body)
    if request.get('operation') != 'upload' or 'basic' not in request.get('transfers', []):
      return self._reply(422, {'error': 'only the basic upload transfer is served'})
    objects = []
    for item in request['objects']:
      answer = {'oid': item['oid'], 'size': item['size']}
      if item['oid'] not in server.lfs_objects:  # no actions: the Hub already holds it
        answer['actions'] = {'upload': {'href': f'{server.url}/lfs/{item["oid"]}'},
                             'verify': {'href': f'{server.url}/lfs/verify'}}
      objects.append(answer)
    return self._reply(200, {'transfer': 'basic', 'objects': objects})

  def _preupload(self, server, body: bytes):
    files = json.loads(body)['files']
    threshold = server.lfs_threshold
    return self._reply(200, {'files': [
        {'path': f['path'], 'shouldIgnore': False,
         'uploadMode': 'lfs' if threshold is not None and f['size'] >= threshold
         else 'regular'} for f in files]})

  def do_POST(self):
    server = self.server.owner
    body = self._body()
    path = self.path.split('?', 1)[0]
    with server.lock:
      server.posts.append(path)
    if self.headers.get('Authorization') != f'Bearer {server.token}':
      return self._reply(401, {'error': 'Invalid credentials in Authorization header'})
    if path.endswith('.git/info/lfs/objects/batch'):
      repo = path[1:-len('.git/info/lfs/objects/batch')]
      if repo not in server.repos:
        return self._reply(404, {'error': 'Repository not found'})
      return self._lfs_batch(server, repo, body)
    if path == '/lfs/verify':
      request = json.loads(body)
      stored = server.lfs_objects.get(request['oid'])
      if stored is None or len(stored) != request['size']:
        return self._reply(404, {'error': f'LFS object {request["oid"]} not uploaded'})
      return self._reply(200, {})
    if path == '/api/repos/create':
      request = json.loads(body)
      repo = f'{request["organization"]}/{request["name"]}'
      with server.lock:
        exists = repo in server.repos
        server.repos.setdefault(repo, {'private': request.get('visibility') == 'private'})
      if exists:
        return self._reply(409, {'error': 'You already created this model repo'})
      return self._reply(200, {'url': f'{server.url}/{repo}'})
    if path == '/api/validate-yaml':
      return self._reply(200, {'warnings': [], 'errors': []})
    parts = path.split('/')  # '', 'api', 'models', owner, name, 'preupload'|'commit', rev
    if len(parts) == 7 and parts[:3] == ['', 'api', 'models'] and parts[5] in ('preupload',
                                                                               'commit'):
      repo = f'{parts[3]}/{parts[4]}'
      if repo not in server.repos:
        return self._reply(404, {'error': 'Repository not found'})
      if parts[5] == 'preupload':
        return self._preupload(server, body)
      if server.refuse_commits:
        return self._reply(403, {'error': 'You have no write access to this repository'})
      return self._commit(server, repo, body)
    return self._reply(404, {'error': f'no endpoint {path}'})

  def _commit(self, server, repo: str, body: bytes):
    header, added, pointers = None, {}, {}
    for line in body.splitlines():
      item = json.loads(line)
      if item['key'] == 'header':
        header = item['value']
      elif item['key'] == 'file':
        added[item['value']['path']] = base64.b64decode(item['value']['content'])
      elif item['key'] == 'lfsFile':
        pointers[item['value']['path']] = item['value']['oid']
    if header is None:
      return self._reply(400, {'error': 'no commit header'})
    missing = sorted(p for p, oid in pointers.items() if oid not in server.lfs_objects)
    if missing:
      return self._reply(400, {'error': f'LFS object(s) of {", ".join(missing)} not uploaded'})
    with server.lock:
      added.update({p: server.lfs_objects[oid] for p, oid in pointers.items()})
      for name, data in added.items():
        server.files[f'/{repo}/resolve/main/{name}'] = data
      server.commits.append((repo, header['summary'], sorted(added)))
      server.lfs_commits.append((repo, sorted(pointers)))
    return self._reply(200, {'commitUrl': f'{server.url}/{repo}/commit/{COMMIT}',
                             'commitOid': COMMIT})


class HubServer(WeightsServer):
  """`with HubServer(token) as hub:` a Hub on 127.0.0.1 accepting uploads with `token`;
  `hub.commits` lists (repo, message, files), `hub.posts` every POST path, `hub.puts` every
  PUT path; `lfs_threshold` (bytes, None: never) sends files from that size through LFS,
  `hub.lfs_commits` lists (repo, files committed as LFS pointers)."""

  def __init__(self, token: str = 'hf_test_token', lfs_threshold=None):
    super().__init__()
    self._httpd.RequestHandlerClass = _HubHandler
    self.token, self.repos, self.commits, self.posts = token, {}, [], []
    self.lfs_threshold, self.lfs_objects, self.lfs_commits, self.puts = (
        lfs_threshold, {}, [], [])
    self.refuse_commits = False
    self.lock = threading.Lock()

  def serve_folder(self, repo: str, folder) -> None:
    """Serves the files of a local folder as repository `repo`'s."""
    import os
    for name in os.listdir(folder):
      with open(os.path.join(folder, name), 'rb') as f:
        self.files[f'/{repo}/resolve/main/{name}'] = f.read()


def use_hub(monkeypatch, url: str, cache: str, token: str):
  """Points huggingface_hub at `url` for this test, as HF_ENDPOINT and HF_HUB_CACHE set before
  its import would: the environment, and the constants it read at import (timm's downloads go
  through them; jax_resnet re-reads the environment itself)."""
  from huggingface_hub import constants
  monkeypatch.setenv('HF_ENDPOINT', url)
  monkeypatch.setenv('HF_HUB_CACHE', cache)
  monkeypatch.setenv('HF_TOKEN', token)
  monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
  monkeypatch.setattr(constants, 'ENDPOINT', url)
  monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE',
                      url + '/{repo_id}/resolve/{revision}/{filename}')
  monkeypatch.setattr(constants, 'HF_HUB_CACHE', cache)
