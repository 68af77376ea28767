"""lesion: with nothing deleted the accuracy equals the trainer's own final evaluation exactly;
deleting a residual block equals zeroing its branch's last BatchNorm by hand; deleting a plain
block equals the shorter net with the same remaining weights."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, lesion
from jax_resnet.config import train_and_evaluate

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

TINY = 'stage_sizes=(2,1);stage_widths=(4,8);stem_width=4'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('lesion_run'))
  config = jr.load_config('default')
  config.update(dict(num_train_steps=3, log_every_steps=3, checkpoint_every_steps=3,
                     progress_bar=False, batch_size=64, eval_batch_size=128,
                     warmup_epochs=0.0))
  summary = train_and_evaluate(config, workdir)
  return workdir, summary


def test_nothing_deleted_equals_the_trainers_eval_accuracy_exactly(trained, tmp_path):
  workdir, summary = trained
  out = str(tmp_path / 'lesion')
  argv = ['lesion', '--workdir', workdir, '--draws', '2', '--out', out]
  path, (result,) = lesion.main(cli.parser().parse_args(argv), argv)
  assert result['baseline_top1'] == summary['final_eval_top1']
  assert result['num_examples'] == summary['eval_examples']
  assert result['label'] == f'resnet20@{summary["steps"]}'
  assert result['downsampling'] == [False] * 3 + [True] + [False] * 2 + [True] + [False] * 2
  assert all(result['deletable'])
  assert result['k'] == list(range(1, 8)) and result['k_draws'][0] == 2
  assert result['k_draws'][-1] == 1  # one subset holds all 7 shape-keeping blocks
  text = open(path).read()
  for value in [result['baseline_top1']] + result['single_top1'] + result['k_mean_top1']:
    assert common.fmt(value) in text
  for png in ('lesion_single.png', 'lesion_k.png'):
    assert os.path.getsize(os.path.join(out, png)) > 1000
  assert json.load(open(os.path.join(out, 'results.json')))['models'][0]['baseline_top1'] == \
      summary['final_eval_top1']


def _images():
  """float64: the deletion identities below are maths, compared near round-off."""
  return np.asarray(jax.random.normal(jax.random.key(3), (6, 16, 16, 3), jnp.float64))


def test_deleting_a_residual_block_is_zeroing_its_branch(x64):
  subject = common.init_subject('resnet20:' + TINY, dtype='float64')
  apply, blocks, deletable = lesion.lesioned_apply(subject, (16, 16, 3))
  images = _images()
  for index, name in enumerate(['stage1_block2', 'stage2_block1']):
    i = [b.name for b in blocks].index(name)
    keep = jnp.asarray([j != i for j in range(len(blocks))])
    zeroed = jax.tree.map(lambda x: x, subject.variables['params'])
    zeroed[name]['bn2'] = {'scale': jnp.zeros(8 if index else 4, jnp.float64),
                           'bias': jnp.zeros(8 if index else 4, jnp.float64)}
    expected = subject.model.apply({**subject.variables, 'params': zeroed}, images, train=False)
    np.testing.assert_allclose(apply(subject.variables, keep, images), expected, atol=1e-12)
  assert deletable == [True, True, True]


def test_deleting_a_plain_block_is_the_shorter_net(x64):
  subject = common.init_subject('plain20:' + TINY, dtype='float64')
  apply, blocks, deletable = lesion.lesioned_apply(subject, (16, 16, 3))
  assert deletable == [True, True, False]  # stage2_block1 changes the shape
  short = jr.create_model('plain20', stage_sizes=(1, 1), stage_widths=(4, 8), stem_width=4,
                          dtype='float64', param_dtype='float64')
  drop = lambda tree: {k: v for k, v in tree.items() if k != 'stage1_block2'}
  variables = {c: drop(t) for c, t in subject.variables.items()}
  images = _images()
  keep = jnp.asarray([True, False, True])
  np.testing.assert_allclose(apply(subject.variables, keep, images),
                             short.apply(variables, images, train=False), atol=1e-12)
  full = subject.model.apply(subject.variables, images, train=False)
  np.testing.assert_allclose(apply(subject.variables, jnp.ones(3, bool), images), full,
                             rtol=0, atol=1e-12 * float(np.max(np.abs(full))))
  labels = np.arange(6)
  result = lesion.lesion_study(subject, images, labels, draws=3)
  assert np.isnan(result['single_top1'][2]) and result['k'] == [1, 2]
