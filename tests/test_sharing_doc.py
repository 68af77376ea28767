"""docs/sharing.md runs as printed: every bash and python block, in order, in one folder, with
a loopback Hub (tests/hub_server.py) as HF_ENDPOINT; the training run cut to 4 steps."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from hub_server import HubServer, use_hub

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = 'hf_doc_token'


def doc_blocks():
  with open(os.path.join(ROOT, 'docs', 'sharing.md'), encoding='utf-8') as f:
    return re.findall(r'```(bash|python)\n(.*?)```', f.read(), re.S)


def _run_bash(block: str, cwd, env):
  for line in block.strip().splitlines():
    argv = shlex.split(line.replace('num_train_steps=40', 'num_train_steps=4'))
    assert argv[0] == 'jax-resnet', line
    result = subprocess.run([sys.executable, '-m', 'jax_resnet', *argv[1:]], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_every_block_of_docs_sharing_runs(tmp_path, monkeypatch):
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  pytest.importorskip('timm')
  blocks = doc_blocks()
  assert [kind for kind, _ in blocks] == ['bash', 'python', 'bash', 'python', 'python', 'bash',
                                          'python', 'python']
  with HubServer(TOKEN) as hub:
    env = {**os.environ, 'HF_ENDPOINT': hub.url, 'HF_TOKEN': TOKEN,
           'HF_HUB_CACHE': str(tmp_path / 'hf_cache'),
           'PYTHONPATH': os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])}
    use_hub(monkeypatch, hub.url, env['HF_HUB_CACHE'], TOKEN)
    monkeypatch.chdir(tmp_path)
    spaces = []
    for kind, block in blocks:
      if kind == 'bash':
        _run_bash(block, tmp_path, env)
      else:
        namespace = {}
        exec(compile(block, 'docs/sharing.md', 'exec'), namespace)  # noqa: S102  the doc's code
        spaces.append(namespace)
    assert [c[0] for c in hub.commits] == ['me/digits-resnet20', 'me/my-resnet18']
  assert hub.repos['me/digits-resnet20'] == {'private': True}
  assert spaces[1]['logits'].shape == (1, 10)
  timm_block = spaces[2]
  error = np.max(np.abs(timm_block['theirs'] - timm_block['ours'])) / np.max(
      np.abs(timm_block['ours']))
  assert error <= 1e-4
  assert spaces[3]['logits'].shape == (3, 10)
  assert (tmp_path / 'resnet18-os16-features.onnx').stat().st_size > 40_000_000  # weights in
