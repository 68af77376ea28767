"""A loopback server standing in for the Hugging Face Hub in the sharing tests: the downloads
of `weights_server` (GET/HEAD /<repo>/resolve/main/<file>) and the endpoints huggingface_hub
calls for a small upload: POST /api/repos/create, /api/validate-yaml,
/api/models/<repo>/preupload/<revision> (every file answered 'regular': sent inline in the
commit), /api/models/<repo>/commit/<revision> (ndjson: a header, then base64 files). A commit
stores its files, which the download side then serves. Authorization is checked against
`token`; `refuse_commits` answers 403 to commits."""

import base64
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

  def do_POST(self):
    server = self.server.owner
    length = int(self.headers.get('Content-Length') or 0)
    body = self.rfile.read(length)
    path = self.path.split('?', 1)[0]
    with server.lock:
      server.posts.append(path)
    if self.headers.get('Authorization') != f'Bearer {server.token}':
      return self._reply(401, {'error': 'Invalid credentials in Authorization header'})
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
        files = json.loads(body)['files']
        return self._reply(200, {'files': [{'path': f['path'], 'uploadMode': 'regular',
                                            'shouldIgnore': False} for f in files]})
      if server.refuse_commits:
        return self._reply(403, {'error': 'You have no write access to this repository'})
      return self._commit(server, repo, body)
    return self._reply(404, {'error': f'no endpoint {path}'})

  def _commit(self, server, repo: str, body: bytes):
    header, added = None, {}
    for line in body.splitlines():
      item = json.loads(line)
      if item['key'] == 'header':
        header = item['value']
      elif item['key'] == 'file':
        added[item['value']['path']] = base64.b64decode(item['value']['content'])
    if header is None:
      return self._reply(400, {'error': 'no commit header'})
    with server.lock:
      for name, data in added.items():
        server.files[f'/{repo}/resolve/main/{name}'] = data
      server.commits.append((repo, header['summary'], sorted(added)))
    return self._reply(200, {'commitUrl': f'{server.url}/{repo}/commit/{COMMIT}',
                             'commitOid': COMMIT})


class HubServer(WeightsServer):
  """`with HubServer(token) as hub:` a Hub on 127.0.0.1 accepting uploads with `token`;
  `hub.commits` lists (repo, message, files), `hub.posts` every POST path."""

  def __init__(self, token: str = 'hf_test_token'):
    super().__init__()
    self._httpd.RequestHandlerClass = _HubHandler
    self.token, self.repos, self.commits, self.posts = token, {}, [], []
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
