"""train_and_evaluate end to end on the embedded digits (8 simulated devices): the workdir
contract, exact evaluation, preemption + resume equal to an uninterrupted run, TFDS mock data."""

import dataclasses
import json
import os
import signal

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jax_resnet as jr
from jax_resnet import data
from jax_resnet.config import resolve, train_and_evaluate
from jax_resnet.training import loop, optim, setup
from jax_resnet.training.checkpoints import Checkpoints


def _config(**overrides):
  config = jr.load_config('default')
  config.update(dict(num_train_steps=12, log_every_steps=4, eval_every_steps=6,
                     checkpoint_every_steps=6, progress_bar=False, batch_size=64,
                     eval_batch_size=128, warmup_epochs=0.0), **overrides)
  return config


def _restore(workdir, config, step=None):
  """The params/batch_stats of a workdir's checkpoint, read back through Orbax."""
  spec = resolve(config)
  model = setup.build_model(spec)
  tx = optim.make_optimizer(**dataclasses.asdict(spec.optimizer))
  template = setup.host_state(spec, model, tx, (16, 16, 3))
  restored = Checkpoints(os.path.join(workdir, 'checkpoints'), 3).restore(template)
  assert restored is not None
  return restored


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  config = _config()
  summary = train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_workdir_contract(short_run):
  config, workdir, summary = short_run
  assert sorted(os.listdir(workdir)) == ['.lock', 'checkpoints', 'class_names.json',
                                         'config.json', 'config_history',
                                         'eval_preprocessing.json', 'mean_image.npy',
                                         'metrics.jsonl', 'summary.json', 'tensorboard']
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f) == summary
  assert {'final_eval_top1', 'final_eval_loss', 'steps', 'wall_seconds',
          'train_images_per_second'} <= set(summary)
  assert summary['steps'] == 12 and summary['eval_examples'] == 360
  assert summary['devices'] == 8 and summary['train_images_per_second'] > 0
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [(r['split'], r['step']) for r in rows] == [
      ('train', 4), ('train', 6), ('eval', 6), ('train', 8), ('train', 12), ('eval', 12)]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']
  assert any(f.startswith('events.out.tfevents')
             for f in os.listdir(os.path.join(workdir, 'tensorboard')))
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert (saved['model'], saved['parallelism'], saved['num_train_steps']) == (
      'resnet20', 'shard_map', 12)
  assert saved['model_options']['shortcut'] is None and 'shortcut' not in saved
  assert summary['parallelism'] == 'shard_map'


def test_final_eval_equals_an_independent_count_over_the_split(short_run):
  config, workdir, summary = short_run
  step, state, _, meta = _restore(workdir, config)
  assert step == 12 and meta['step'] == 12
  assert meta['config']['model'] == 'resnet20' and meta['config']['num_train_steps'] == 12
  model = jr.create_model('resnet20')
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  correct = total = 0
  for batch in data.eval_batches(resolve(config).data):
    logits = model.apply(variables, batch['image'], train=False)
    hits = (np.argmax(logits, -1) == batch['label']) & batch['mask']
    correct += int(hits.sum())
    total += int(batch['mask'].sum())
  assert total == 360
  assert summary['final_eval_top1'] == correct / 360


class _PreemptAfter(loop.Preemption):
  """SIGTERM delivered for real after `n` steps have been checked."""
  n = 9

  def __init__(self):
    super().__init__()
    self.checks = 0

  def __getattribute__(self, name):
    if name == 'requested':
      checks = object.__getattribute__(self, 'checks') + 1
      object.__setattr__(self, 'checks', checks)
      if checks == type(self).n:
        os.kill(os.getpid(), signal.SIGTERM)
    return object.__getattribute__(self, name)


def test_sigterm_checkpoints_and_rerun_matches_uninterrupted(short_run, tmp_path, monkeypatch):
  config, reference_dir, _ = short_run
  workdir = str(tmp_path)
  monkeypatch.setattr(loop, 'Preemption', _PreemptAfter)
  first = train_and_evaluate(_config(), workdir)
  assert 'preempted_at_step' in first and first['preempted_at_step'] < 12
  assert str(first['preempted_at_step']) in os.listdir(os.path.join(workdir, 'checkpoints'))
  monkeypatch.undo()
  second = train_and_evaluate(_config(), workdir)
  assert second['steps'] == 12
  _, resumed, _, _ = _restore(workdir, config)
  _, reference, _, _ = _restore(reference_dir, config)
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params)):
    np.testing.assert_array_equal(a, b)  # bitwise on CPU, data order included


def test_sigterm_during_evaluation_abandons_it_and_saves(tmp_path, monkeypatch):
  served = []
  real_eval_batches = data.eval_batches

  def eval_batches(*args, **kwargs):  # SIGTERM while the first eval batch is evaluated
    for batch in real_eval_batches(*args, **kwargs):
      served.append(batch)
      if len(served) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  monkeypatch.setattr(loop.data, 'eval_batches', eval_batches)
  summary = train_and_evaluate(_config(), str(tmp_path))
  assert summary == {'preempted_at_step': 6}
  assert len(served) == 2  # of 3 (360 examples in batches of 128): the rest never read
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [(r['split'], r['step']) for r in rows] == [('train', 4), ('train', 6)]
  assert os.listdir(tmp_path / 'checkpoints') == ['6']


def test_workdir_of_another_model_is_refused(short_run):
  _, workdir, _ = short_run
  with pytest.raises(loop.UserError) as err:
    train_and_evaluate(_config(model='resnet32'), workdir)
  assert "model: 'resnet20' -> 'resnet32'" in str(err.value)
  assert 'Use a new --workdir' in str(err.value)


def test_tfds_path_end_to_end_on_mock_data(tmp_path):
  # A data_dir of its own: dataset metadata is cached per config within a process.
  config = _config(dataset='cifar10', image_size=32, normalize='none', num_train_steps=2,
                   batch_size=16, eval_batch_size=32, eval_every_steps=0,
                   checkpoint_every_steps=100, data_dir=str(tmp_path / 'tfds'))
  with tfds.testing.mock_data(num_examples=48):
    summary = train_and_evaluate(config, str(tmp_path / 'run'))
  assert (summary['steps'], summary['eval_examples'], summary['dataset']) == (2, 48, 'cifar10')
  assert 0.0 <= summary['final_eval_top1'] <= 1.0 and np.isfinite(summary['final_eval_loss'])
