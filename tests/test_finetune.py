"""Fine-tuning through the trainer: init_from a weights file, a fresh head, frozen BN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jax_resnet as jr
from jax_resnet import weights
from jax_resnet.config import train_and_evaluate
from test_training import _config

# Fine-tuning runs of the trainer, whose parts (weights files, checkpoints, training) the other
# tests cover in every environment: CI runs these in its newest environment only.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def pretrained_file(tmp_path_factory):
  """A 1000-class resnet18 with non-trivial BN statistics, saved as our .npz export."""
  model = jr.create_model('resnet18')
  x = jax.random.normal(jax.random.key(3), (4, 32, 32, 3))
  variables = model.init(jax.random.key(7), x, train=False)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  variables = {'params': variables['params'], 'batch_stats': updates['batch_stats']}
  path = weights.save_npz(str(tmp_path_factory.mktemp('w') / 'r18.npz'), variables)
  return path, jax.device_get(variables)


def _finetune(tmp_path, path, freeze_batch_norm=None, **overrides):
  settings = dict(model='resnet18', dataset='cifar10', image_size=32, normalize='none',
                  num_train_steps=2, batch_size=16, eval_batch_size=32, eval_every_steps=0,
                  checkpoint_every_steps=100, init_from=path, init_reinit_head=True,
                  data_dir=str(tmp_path / 'tfds'))  # own cache key (see test_training)
  config = _config(**{**settings, **overrides})
  config.model_options.freeze_batch_norm = freeze_batch_norm  # None: the model's default
  with tfds.testing.mock_data(num_examples=32):
    train_and_evaluate(config, str(tmp_path / 'run'))
  return weights.load('resnet18', str(tmp_path / 'run'), num_classes=10)


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_zero_lr_keeps_every_pretrained_weight_and_a_fresh_head(tmp_path, pretrained_file):
  path, reference = pretrained_file
  tuned = _finetune(tmp_path, path, learning_rate=0.0, weight_decay=0.0,
                    freeze_batch_norm=True)
  ours, theirs = _flat(tuned['params']), _flat(reference['params'])
  assert ours.keys() == theirs.keys()
  for key in ours:
    if "['head']" in key:
      assert ours[key].shape[-1] == 10 and theirs[key].shape[-1] == 1000
    else:
      np.testing.assert_array_equal(ours[key], theirs[key])
  for key, value in _flat(tuned['batch_stats']).items():
    np.testing.assert_array_equal(value, _flat(reference['batch_stats'])[key])


def test_frozen_batch_norm_keeps_statistics_while_weights_train(tmp_path, pretrained_file):
  path, reference = pretrained_file
  frozen = _finetune(tmp_path / 'frozen', path, learning_rate=0.05, freeze_batch_norm=True)
  live = _finetune(tmp_path / 'live', path, learning_rate=0.05, freeze_batch_norm=False)
  stats_ref = _flat(reference['batch_stats'])
  assert all(np.array_equal(v, stats_ref[k]) for k, v in _flat(frozen['batch_stats']).items())
  assert not all(np.array_equal(v, stats_ref[k]) for k, v in _flat(live['batch_stats']).items())
  kernel = frozen['params']['stage1_block1']['conv1']['kernel']
  before = reference['params']['stage1_block1']['conv1']['kernel']
  assert float(jnp.max(jnp.abs(kernel - before))) > 0


def test_head_mismatch_without_reinit_is_one_clear_error(tmp_path, pretrained_file):
  path, _ = pretrained_file
  with pytest.raises(weights.HeadMismatchError) as err:
    _finetune(tmp_path, path, init_reinit_head=False)
  assert 'head' in str(err.value) and '1000' in str(err.value)
