"""A push of a real-size model: the Hub takes files above 10 MB through git-LFS, not inline in the
commit. huggingface_hub's LFS path (preupload says 'lfs', the batch endpoint, a PUT of the
bytes, a verify, an LFS pointer in the commit) against the loopback Hub (tests/hub_server.py),
with hf_xet's protocol switched off (HF_HUB_DISABLE_XET: the loopback Hub does not speak it),
then the repository downloaded back through the same server and loaded."""

import hashlib
import os

import numpy as np

import jax_resnet as jr
from jax_resnet.weights.trees import flatten

from hub_server import HubServer, use_hub
from random_variables import random_variables

TOKEN = 'hf_test_token'
HUB_REGULAR_LIMIT = 10 * 2**20  # the Hub refuses larger files sent inline ("regular")


def test_a_real_size_model_is_pushed_through_lfs_and_loads_back(tmp_path, monkeypatch):
  from huggingface_hub import constants
  monkeypatch.setenv('HF_HUB_DISABLE_XET', '1')
  monkeypatch.setattr(constants, 'HF_HUB_DISABLE_XET', True)  # read at import
  model = jr.create_model('resnet18')
  variables = random_variables(model, 32, seed=0)
  folder = jr.save_pretrained((variables, 'resnet18'), tmp_path / 'repo', 'timm')
  with open(os.path.join(folder, 'model.safetensors'), 'rb') as f:
    data = f.read()
  assert len(data) > 4 * HUB_REGULAR_LIMIT  # 11.7M float32 parameters
  oid = hashlib.sha256(data).hexdigest()
  with HubServer(TOKEN, lfs_threshold=HUB_REGULAR_LIMIT) as hub:
    use_hub(monkeypatch, hub.url, str(tmp_path / 'hf_cache'), TOKEN)
    url, layout = jr.push_to_hub((variables, 'resnet18'), 'me/r18', layout='timm')
    assert layout == 'timm' and url.endswith('/me/r18/commit/' + 'c0ffee' * 6 + 'c0ff')
    assert hub.puts == [f'/lfs/{oid}']
    assert hub.posts == ['/api/repos/create', '/api/validate-yaml',
                         '/api/models/me/r18/preupload/main',
                         '/me/r18.git/info/lfs/objects/batch', '/lfs/verify',
                         '/api/models/me/r18/commit/main']
    assert hub.commits == [('me/r18', 'Upload model saved by jax_resnet',
                            ['README.md', 'config.json', 'model.safetensors'])]
    assert hub.lfs_commits == [('me/r18', ['model.safetensors'])]
    assert hub.files['/me/r18/resolve/main/model.safetensors'] == data
    # The same bytes again, to another repository: the batch answer says the Hub holds them,
    # so nothing is sent but the pointer.
    jr.push_to_hub((variables, 'resnet18'), 'me/r18-copy', layout='timm')
    assert hub.puts == [f'/lfs/{oid}']
    assert hub.lfs_commits[-1] == ('me/r18-copy', ['model.safetensors'])
    loaded_model, loaded = jr.load_pretrained('hf-hub:me/r18-copy')
  assert loaded_model.stage_sizes == model.stage_sizes
  got, want = flatten(loaded), flatten(variables)
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_array_equal(np.asarray(got[name]), want[name], err_msg=name)
