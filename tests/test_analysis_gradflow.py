"""gradflow: the block-input gradients found by interception equal jax.grad of the tail of the
network rebuilt by hand from standalone blocks, and the weight-gradient norms equal jax.grad of
the loss with respect to the parameters; the CLI writes the numbers it returned. The
comparisons are of maths computed two ways, so they run in float64 near round-off."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_resnet as jr
from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, gradflow

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

TINY = 'stage_sizes=(2,1);stage_widths=(4,8);stem_width=4'
RTOL = 1e-10


def _batch(n=8, dtype=jnp.float64):
  images = jax.random.normal(jax.random.key(1), (n, 16, 16, 3), dtype)
  return images, jnp.arange(n) % 10


def _loss(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _hand_built_tail_grads(model, variables, images, labels):
  """dL/dx_l for every block input, with the blocks applied one by one as models.ResNet lays
  them out (train mode: batch statistics) and a hand-written head."""
  params, stats = variables['params'], variables['batch_stats']
  conv, norm = jr.make_layers(train=True, dtype=model.dtype, param_dtype=model.param_dtype)
  blocks = []
  for i, (size, width) in enumerate(zip(model.stage_sizes, model.stage_widths)):
    for j in range(size):
      strides = (2, 2) if i > 0 and j == 0 else (1, 1)
      blocks.append((f'stage{i + 1}_block{j + 1}', jr.BasicBlock(
          width, strides, conv=conv, norm=norm, shortcut=model.shortcut,
          residual=model.residual)))

  def run(x, start):
    for name, block in blocks[start:]:
      x, _ = block.apply({'params': params[name], 'batch_stats': stats[name]}, x, train=True,
                         mutable=['batch_stats'])
    return x

  def tail_loss(x, start):
    pooled = jnp.mean(run(x, start), axis=(1, 2))
    return _loss(pooled @ params['head']['kernel'] + params['head']['bias'], labels)

  features, _ = model.apply(variables, images, train=True, return_features=True,
                            mutable=['batch_stats'])
  xs = [features['stem']]
  for i in range(len(blocks) - 1):
    xs.append(run_one(blocks[i], params, stats, xs[-1]))
  return [float(jnp.linalg.norm(jax.grad(tail_loss)(x, i))) for i, x in enumerate(xs)]


def run_one(named_block, params, stats, x):
  name, block = named_block
  out, _ = block.apply({'params': params[name], 'batch_stats': stats[name]}, x, train=True,
                       mutable=['batch_stats'])
  return out


@pytest.mark.parametrize('name', ['resnet20', 'plain20'])
def test_block_and_weight_gradient_norms_equal_direct_jax_grad(name, x64):
  subject = common.init_subject(f'{name}:{TINY}', dtype='float64')
  images, labels = _batch()
  result = gradflow.gradient_norms(subject, images, labels, train=True)
  expected = _hand_built_tail_grads(subject.model, subject.variables, images, labels)
  assert result['blocks'] == ['stage1_block1', 'stage1_block2', 'stage2_block1']
  np.testing.assert_allclose(result['block_grad_norms'], expected, rtol=RTOL)

  def loss(params):
    logits, _ = subject.model.apply({**subject.variables, 'params': params}, images,
                                    train=True, mutable=['batch_stats'])
    return _loss(logits, labels)
  grads = jax.grad(loss)(subject.variables['params'])
  direct = [float(jnp.linalg.norm(gradflow._lookup(grads, p))) for p in result['layers']]
  np.testing.assert_allclose(result['weight_grad_norms'], direct, rtol=RTOL)
  assert result['layers'][0] == 'conv_init/kernel' and result['layers'][-1] == 'head/kernel'
  assert result['layers'][1:3] == ['stage1_block1/conv1/kernel', 'stage1_block1/conv2/kernel']


def test_cli_writes_report_with_the_returned_numbers(tmp_path):
  out = str(tmp_path / 'gf')
  argv = ['gradflow', '--models', f'resnet20:{TINY},plain20:{TINY}', '--batch-size', '8',
          '--out', out]
  args = cli.parser().parse_args(argv)
  path, results = gradflow.main(args, argv)
  text = open(path).read()
  assert 'python -m jax_resnet.analysis gradflow --models' in text
  assert 'jax ' in text and 'flax ' in text and 'Date: ' in text
  for r in results:
    for value in r['block_grad_norms'] + [r['block_ratio_first_last'], r['loss']]:
      assert common.fmt(value) in text
  for png in ('gradflow_blocks.png', 'gradflow_layers.png'):
    assert os.path.getsize(os.path.join(out, png)) > 1000
  saved = json.load(open(os.path.join(out, 'results.json')))
  assert saved['models'][0]['block_grad_norms'] == results[0]['block_grad_norms']


def test_scanned_stages_are_analysed_as_their_unrolled_twin(x64):
  model = jr.create_model('resnet20', stage_sizes=(3, 1), stage_widths=(4, 8), stem_width=4,
                          scan_blocks=True, dtype='float64', param_dtype='float64')
  images, labels = _batch()
  variables = model.init(jax.random.key(0), images[:1], train=False)
  twin, unrolled = common.unrolled(model, variables)
  expected = model.apply(variables, images, train=False)
  np.testing.assert_allclose(twin.apply(unrolled, images, train=False), expected, rtol=0,
                             atol=1e-12 * float(jnp.max(jnp.abs(expected))))
  subject = common.Subject('scanned', twin, unrolled, common.data_spec())
  assert len(gradflow.gradient_norms(subject, images, labels)['blocks']) == 4
