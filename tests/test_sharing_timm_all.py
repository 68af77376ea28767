"""save_pretrained(layout='timm') for EVERY registered model with a timm counterpart: the folder,
served by the loopback Hub (tests/hub_server.py, HF_ENDPOINT), loads with
`timm.create_model('hf-hub:me/<model>', pretrained=True)` and gives our logits (float32,
<= 1e-4 relative). Full-size models (timm builds the full architecture), random weights drawn
from their shapes with numpy (no init to compile), one eval-mode forward pass each at 32 px."""

import mmap
import os

import jax
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import registry

from hub_server import HubServer, use_hub
from random_variables import random_variables

pytestmark = pytest.mark.slow
torch = pytest.importorskip('torch')
timm = pytest.importorskip('timm')

TOKEN = 'hf_test_token'
SIDE, NUM_CLASSES = 32, 10
TIMM_MODELS = registry.models_with_source('timm')


def _relative(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _free_memory_bytes() -> int:
  with open('/proc/meminfo') as f:
    fields = dict(line.split(':', 1) for line in f)
  return int(fields['MemAvailable'].split()[0]) * 1024


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
  with pytest.MonkeyPatch.context() as monkeypatch, HubServer(TOKEN) as server:
    use_hub(monkeypatch, server.url, str(tmp_path_factory.mktemp('hf_cache')), TOKEN)
    yield server


@pytest.mark.parametrize('name', TIMM_MODELS)
def test_every_model_with_a_timm_counterpart_gives_our_logits_in_timm(tmp_path, hub, name):
  model = jr.create_model(name, num_classes=NUM_CLASSES)
  params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(
      jax.eval_shape(lambda: model.init(jax.random.key(0),
                                        np.zeros((1, SIDE, SIDE, 3), np.float32),
                                        train=False))))
  # Ours, the file (served from a memory map), timm's model and the state dict it loads:
  # about four float32 copies at once.
  if 4 * 4 * params > _free_memory_bytes():
    pytest.skip(f'{name}: {params / 1e6:.0f}M parameters need about '
                f'{16 * params / 2**30:.1f} GiB of free memory; this machine has less now')
  variables = random_variables(model, SIDE, seed=len(name))
  x = np.random.default_rng(1).normal(size=(2, SIDE, SIDE, 3)).astype(np.float32)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  ours = np.asarray(apply(variables, x))
  folder = jr.save_pretrained((variables, name), tmp_path / 'repo', 'timm')
  del variables
  files = []
  for file_name in os.listdir(folder):
    with open(os.path.join(folder, file_name), 'rb') as f:
      files.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
      hub.files[f'/me/{name}/resolve/main/{file_name}'] = files[-1]
  try:
    # Our loader reads the same repository back: the same model, our logits.
    loaded_model, loaded = jr.load_pretrained(f'hf-hub:me/{name}')
    assert loaded_model == model
    assert _relative(apply(loaded, x), ours) <= 1e-5, name
    del loaded
    timm_model = timm.create_model(f'hf-hub:me/{name}', pretrained=True).eval()
    assert timm_model.num_classes == NUM_CLASSES
    with torch.no_grad():
      theirs = timm_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  finally:
    for file_name in os.listdir(folder):
      hub.files.pop(f'/me/{name}/resolve/main/{file_name}', None)
    for mapped in files:
      mapped.close()
  assert np.max(np.abs(ours)) > 1e-3  # logits that carry the weights, not a constant
  assert _relative(theirs, ours) <= 1e-4, name
