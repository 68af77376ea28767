"""save_pretrained / push_to_hub / `jax-resnet push`: the folder each layout writes, loaded back
by jax_resnet (folder and hf-hub:) and by timm, and an upload to a loopback Hub
(tests/hub_server.py: huggingface_hub's real client against real HTTP, HF_ENDPOINT)."""

import json

import jax
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import sharing
from jax_resnet.weights import WeightsError

from hub_server import HubServer, use_hub

TOKEN = 'hf_test_token'


def _relative(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def trained_like(name, side, seed=0, **options):
  """Variables of `name` with non-trivial BatchNorm statistics (one train-mode pass)."""
  model = jr.create_model(name, **options)
  x = jax.random.normal(jax.random.key(seed + 1), (4, side, side, 3))
  variables = model.init(jax.random.key(seed), x, train=False)
  if 'batch_stats' in variables:
    _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    variables = {'params': variables['params'], 'batch_stats': updates['batch_stats']}
  return model, jax.device_get(variables)


@pytest.fixture
def hub(monkeypatch, tmp_path):
  with HubServer(TOKEN) as server:
    use_hub(monkeypatch, server.url, str(tmp_path / 'hf_cache'), TOKEN)
    yield server


@pytest.fixture(scope='module')
def resnet18():
  return trained_like('resnet18', 32)


def test_timm_layout_loads_in_jax_resnet_and_timm_with_equal_logits(tmp_path, hub, resnet18):
  torch = pytest.importorskip('torch')
  timm = pytest.importorskip('timm')
  model, variables = resnet18
  names = [f'class {i}' for i in range(1000)]
  folder = jr.save_pretrained((variables, 'resnet18'), tmp_path / 'repo', 'timm',
                              class_names=names, repo_id='me/r18')
  config = json.loads((tmp_path / 'repo' / 'config.json').read_text())
  assert (config['architecture'], config['num_classes'], config['num_features']) == (
      'resnet18', 1000, 512)
  assert config['pretrained_cfg']['input_size'] == [3, 224, 224]
  assert config['label_names'] == names
  assert sorted(p.name for p in (tmp_path / 'repo').iterdir()) == [
      'README.md', 'config.json', 'model.safetensors']
  card = (tmp_path / 'repo' / 'README.md').read_text()
  assert card.startswith('---\nlibrary_name: timm\n')
  assert "timm.create_model('hf-hub:me/r18', pretrained=True)" in card
  x = np.asarray(jax.random.normal(jax.random.key(5), (2, 32, 32, 3)))
  reference = model.apply(variables, x, train=False)
  _, from_folder = jr.load_pretrained(folder)
  assert _relative(model.apply(from_folder, x, train=False), reference) <= 1e-5
  hub.serve_folder('me/r18', folder)
  loaded_model, from_hub = jr.load_pretrained('hf-hub:me/r18')
  assert _relative(loaded_model.apply(from_hub, x, train=False), reference) <= 1e-5
  timm_model = timm.create_model('hf-hub:me/r18', pretrained=True).eval()
  assert timm_model.pretrained_cfg['label_names'] == names
  with torch.no_grad():
    theirs = timm_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  assert _relative(theirs, reference) <= 1e-4


def test_jax_resnet_layout_shares_a_model_timm_lacks_through_a_push(tmp_path, hub):
  model, variables = trained_like('resnet20', 16, stage_sizes=(1, 1, 1))
  with pytest.raises(WeightsError) as err:
    jr.save_pretrained((variables, 'resnet20'), tmp_path / 'timm', 'timm')
  assert str(err.value).startswith("resnet20 has no timm counterpart; save it with "
                                   "layout='jax_resnet'")
  assert not (tmp_path / 'timm').exists()
  url, layout = jr.push_to_hub((variables, model), 'me/r20', layout=None, private=True)
  assert layout == 'jax_resnet'
  assert url.endswith('/me/r20/commit/' + 'c0ffee' * 6 + 'c0ff')
  assert hub.commits == [('me/r20', 'Upload model saved by jax_resnet',
                          ['README.md', 'config.json', 'model.safetensors'])]
  assert hub.repos['me/r20'] == {'private': True}
  loaded_model, loaded = jr.load_pretrained('hf-hub:me/r20')
  assert loaded_model.stage_sizes == (1, 1, 1)
  x = np.asarray(jax.random.normal(jax.random.key(2), (3, 16, 16, 3)))
  assert _relative(loaded_model.apply(loaded, x, train=False),
                   model.apply(variables, x, train=False)) <= 1e-5


def _push(capsys, *argv):
  from jax_resnet.__main__ import main
  code = main(['push', *argv])
  return code, capsys.readouterr().err


def _workdir_without_checkpoint(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(jr.load_config('default').to_json())
  return workdir


@pytest.mark.parametrize('case', ['no token', 'bad repo', 'no checkpoint', 'refused'])
def test_push_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, hub, capsys,
                                                             monkeypatch, case):
  workdir = _workdir_without_checkpoint(tmp_path)
  repo = 'me/run'
  if case == 'no token':
    monkeypatch.delenv('HF_TOKEN')
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'no_login'))
  if case == 'bad repo':
    repo = 'just-a-name'
  if case == 'refused':
    hub.refuse_commits = True
    monkeypatch.setattr(sharing, '_source', lambda source: _source_of_resnet20())
  before = sorted(p.name for p in tmp_path.iterdir())
  code, err = _push(capsys, '--workdir', str(workdir), '--repo', repo)
  expected = {
      'no token': 'push: error: no Hugging Face token: set HF_TOKEN or run `hf auth login`',
      'bad repo': "push: error: repository 'just-a-name' is not owner/name",
      'no checkpoint': f'push: error: {workdir} holds no finished checkpoint to share: ',
      'refused': f'push: error: the Hub at {hub.url} refused the upload to me/run: '}[case]
  assert (code, err.startswith(expected), err.count('\n')) == (2, True, 1), err
  assert sorted(p.name for p in tmp_path.iterdir()) == before
  assert hub.commits == []


def _source_of_resnet20():
  _, variables = trained_like('resnet20', 16, stage_sizes=(1, 1, 1))
  return ('resnet20', variables, {'stage_sizes': (1, 1, 1)},
          jr.weights.hub_write.Preprocessing(16), jr.weights.hub_write.CardFacts())


@pytest.fixture(scope='module')
def digits_workdir(tmp_path_factory):
  """A finished 4-step run of the default recipe (resnet20 on the embedded digits), with the
  class names and curves a run records."""
  from jax_resnet.training.curves import plot_curves
  workdir = tmp_path_factory.mktemp('runs') / 'digits'
  config = jr.load_config('default')
  config.update(dict(num_train_steps=4, log_every_steps=2, eval_every_steps=2,
                     progress_bar=False))
  jr.train_and_evaluate(config, str(workdir))
  (workdir / 'class_names.json').write_text(json.dumps([str(d) for d in range(10)]))
  plot_curves(str(workdir))
  return workdir


@pytest.mark.slow
def test_push_of_a_workdir_loads_back_with_the_runs_logits(tmp_path, hub, capsys,
                                                           digits_workdir):
  from jax_resnet.__main__ import main
  assert main(['push', '--workdir', str(digits_workdir), '--repo', 'me/digits']) == 0
  assert capsys.readouterr().out.startswith(
      f'pushed {digits_workdir} to me/digits (jax_resnet layout): ')
  assert hub.commits[0][2] == ['README.md', 'config.json', 'curves.png', 'model.safetensors']
  summary = json.loads((digits_workdir / 'summary.json').read_text())
  card = hub.files['/me/digits/resolve/main/README.md'].decode()
  assert f'| final_eval_top1 | {summary["final_eval_top1"]:.4f} |' in card
  assert 'datasets:\n- "digits"' in card and '![training curves](curves.png)' in card
  config = json.loads(hub.files['/me/digits/resolve/main/config.json'])
  assert config['label_names'] == [str(d) for d in range(10)]
  assert config['pretrained_cfg']['input_size'] == [3, 16, 16]
  model, loaded = jr.load_pretrained('hf-hub:me/digits')
  trained = jr.weights.load('resnet20', str(digits_workdir))
  x = np.asarray(jax.random.normal(jax.random.key(4), (3, 16, 16, 3)))
  assert _relative(model.apply(loaded, x, train=False),
                   jr.create_model('resnet20').apply(trained, x, train=False)) <= 1e-5


@pytest.mark.slow
def test_output_stride_travels_to_timm_as_a_model_argument(tmp_path, hub):
  torch = pytest.importorskip('torch')
  timm = pytest.importorskip('timm')
  model, variables = trained_like('resnet18d', 32, output_stride=16)
  jr.save_pretrained((variables, model), tmp_path / 'repo', 'timm')
  config = json.loads((tmp_path / 'repo' / 'config.json').read_text())
  assert config['model_args'] == {'output_stride': 16}
  hub.serve_folder('me/os16', tmp_path / 'repo')
  x = np.asarray(jax.random.normal(jax.random.key(5), (2, 32, 32, 3)))
  reference = model.apply(variables, x, train=False)
  loaded_model, loaded = jr.load_pretrained('hf-hub:me/os16')
  assert loaded_model.output_stride == 16
  assert _relative(loaded_model.apply(loaded, x, train=False), reference) <= 1e-5
  timm_model = timm.create_model('hf-hub:me/os16', pretrained=True).eval()
  with torch.no_grad():
    theirs = timm_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  assert _relative(theirs, reference) <= 1e-4


def test_an_nnx_model_saves_with_its_options_and_loads_from_the_folder(tmp_path):
  from flax import nnx
  model = jr.nnx.create_model('plain20', rngs=nnx.Rngs(3), stage_sizes=(1, 1, 1))
  model.eval()
  folder = jr.save_pretrained(model, tmp_path / 'plain', layout=None)
  config = json.loads((tmp_path / 'plain' / 'config.json').read_text())
  assert config['jax_resnet'] == {'model': 'plain20', 'layout': 'jax_resnet', 'num_classes': 10,
                                  'model_options': {'stage_sizes': [1, 1, 1]}}
  loaded_model, loaded = jr.load_pretrained(folder)
  x = np.asarray(jax.random.normal(jax.random.key(2), (2, 16, 16, 3)))
  assert _relative(loaded_model.apply(loaded, x, train=False), model(x)) <= 1e-5
  with pytest.raises(WeightsError) as err:
    jr.save_pretrained(model, folder, layout='jax_resnet')
  assert str(err.value) == f'{folder} exists and is not an empty folder; pass a new folder.'
