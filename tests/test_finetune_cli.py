"""The fine-tuning promise end to end, as a user types it: `jax-resnet train --config finetune`
from a weight tag (its file served by the loopback Hub, HF_ENDPOINT) on a generated folder of
drawn shapes, then `predict --weights WORKDIR` naming the folder's classes, then a resume that
reads the recorded split although the folder gained files. Separate processes, as the CLI
runs; the recipe's defaults with overrides for a tiny size and length only."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from image_folders import CLASSES, make_folder, shape_image
from weights_server import WeightsServer

pytestmark = pytest.mark.slow
torch = pytest.importorskip('torch')
timm = pytest.importorskip('timm')
safetensors_torch = pytest.importorskip('safetensors.torch')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = 'resnet18d.ra2_in1k'  # the smallest timm tag: a Hub file, served by the loopback server
TAG_PATH = f'/timm/{TAG}/resolve/main/model.safetensors'
TINY = ['--config.image_size=32', '--config.batch_size=16', '--config.eval_batch_size=16',
        '--config.learning_rate=0.05', '--config.warmup_epochs=0',
        '--config.eval_every_steps=1000', '--config.log_every_steps=10',
        '--config.progress_bar=False', '--config.num_workers=0']


def _env(tmp_path, server_url):
  env = {k: v for k, v in os.environ.items()
         if k not in ('HF_HUB_OFFLINE', 'JAX_RESNET_OFFLINE', 'HF_HUB_CACHE', 'HF_TOKEN')}
  env.update(PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', HF_ENDPOINT=server_url,
             HF_HOME=str(tmp_path / 'hf'), JAX_RESNET_CACHE=str(tmp_path / 'cache'),
             NO_PROXY='127.0.0.1', no_proxy='127.0.0.1')
  return env


def _run(env, *argv):
  proc = subprocess.run([sys.executable, '-m', 'jax_resnet', *argv], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr
  return proc


def _train(env, photos, workdir, steps):
  return _run(env, 'train', '--config', 'finetune', f'--config.dataset=folder:{photos}',
              f'--config.init_from={TAG}', f'--config.num_train_steps={steps}',
              f'--config.checkpoint_every_steps={steps}', *TINY, f'--workdir={workdir}')


def test_finetune_from_a_tag_learns_names_the_classes_and_resumes_on_its_split(tmp_path):
  from jax_resnet.weights import download
  assert download.CACHE_ENV == 'JAX_RESNET_CACHE' and download.OFFLINE_ENV == (
      'JAX_RESNET_OFFLINE')
  torch.manual_seed(0)
  published = timm.create_model('resnet18d', num_classes=1000).eval()
  photos, workdir = tmp_path / 'photos', tmp_path / 'run'
  make_folder(str(photos), per_class=40, size=40)
  with WeightsServer() as server:
    server.files[TAG_PATH] = safetensors_torch.save(
        {k: v.contiguous() for k, v in published.state_dict().items()})
    env = _env(tmp_path, server.url)
    first = _train(env, photos, workdir, 60)
    assert server.requests >= 1  # the tag's file came from the server

  # The run: its classes from the folder, a fresh 3-class head on the tag's body.
  assert json.loads((workdir / 'class_names.json').read_text()) == list(CLASSES)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['eval_examples'] == 12
  assert summary['final_eval_top1'] >= 0.9, summary
  split = (workdir / 'split.json').read_text()
  listing = (f'jax_resnet: folder:{photos}: 3 classes, 108 training and 12 eval images '
             '(files recorded in split.json).')
  assert listing in first.stdout.splitlines()

  # predict on new drawings names the folder's classes.
  rng = np.random.default_rng(7)
  images = []
  for kind in CLASSES:
    path = str(tmp_path / f'new_{kind}.png')
    shape_image(kind, rng, 40).save(path)
    images.append(path)
  shown = _run(env, 'predict', '--weights', str(workdir), '--top', '1', *images).stdout
  lines = shown.splitlines()
  for kind, path in zip(CLASSES, images):
    top = lines[lines.index(path) + 1].split()
    assert top[1:] == [kind, f'({CLASSES.index(kind)})'], shown

  # Resumed after the folder gained 20 images a class (and with the server gone): the
  # recorded files, nothing else, and the same split record.
  make_folder(str(photos), per_class=60, size=40, seed=1)
  second = _train(env, photos, workdir, 70)
  assert listing in second.stdout.splitlines()
  assert (workdir / 'split.json').read_text() == split
  summary = json.loads((workdir / 'summary.json').read_text())
  assert (summary['steps'], summary['eval_examples']) == (70, 12)
