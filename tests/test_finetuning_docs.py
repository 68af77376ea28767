"""docs/finetuning.md runs as printed: each python block, in order, on a tiny generated model
(resnet18, 10 classes, its BatchNorm statistics away from (0, 1)) and batch."""

import os
import re

import jax
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import weights
from jax_resnet.weights.trees import flatten

# Long (training runs, several device counts): run by --all and in CI.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 5


def _blocks():
  with open(os.path.join(ROOT, 'docs', 'finetuning.md')) as f:
    return re.findall(r'```python\n(.*?)```', f.read(), re.S)


@pytest.fixture(scope='module')
def namespace(tmp_path_factory):
  module = jr.create_model('resnet18', num_classes=10)
  x = np.random.RandomState(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
  variables = module.init(jax.random.key(0), x[:1], train=False)
  _, updates = module.apply(variables, x, train=True, mutable=['batch_stats'])
  variables = {'params': variables['params'], 'batch_stats': updates['batch_stats']}
  source = weights.save_npz(tmp_path_factory.mktemp('docs') / 'r18.npz', variables)
  labels = np.arange(8) % NUM_CLASSES
  return dict(SOURCE=source, NUM_CLASSES=NUM_CLASSES, images=x, labels=labels,
              _reference=jax.device_get(variables))


def _run(block, namespace):
  exec(compile(block, 'docs/finetuning.md', 'exec'), namespace)  # noqa: S102  the doc's code


def _assert_same(a, b):
  a, b = flatten(jax.device_get(a)), flatten(jax.device_get(b))
  assert sorted(a) == sorted(b)
  for name in b:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_the_doc_has_its_blocks():
  assert len(_blocks()) == 6


def test_loader_block(namespace):
  _run(_blocks()[0], namespace)
  assert namespace['variables']['params']['head']['kernel'].shape == (512, NUM_CLASSES)


def test_flax_guide_pattern_trains_the_head_and_leaves_the_body(namespace):
  _run(_blocks()[1], namespace)
  reference = namespace['_reference']
  body = {k: v for k, v in reference['params'].items() if k != 'head'}
  _assert_same(namespace['params']['backbone'], body)        # frozen: bit-identical
  _assert_same(namespace['batch_stats']['backbone'], reference['batch_stats'])
  assert float(namespace['loss']) < np.log(NUM_CLASSES)   # the head learnt the batch
  # The trap: an unfrozen body's statistics move in training mode.
  _run(_blocks()[2], namespace)
  moved = flatten(namespace['moved'])
  assert all(np.max(np.abs(moved[n] - v)) > 0 for n, v in flatten(
      {'batch_stats': reference['batch_stats']}).items())


def test_finetune_labels_block(namespace):
  _run(_blocks()[3], namespace)
  labels = flatten({'params': namespace['labels_of_params']})
  trained = sorted(n for n, label in labels.items() if label == 'trainable')
  assert trained and all(n.startswith(('params/stage4', 'params/head')) for n in trained)


def test_nnx_route_and_split_merge_inside_grad(namespace):
  from flax import nnx
  _run(_blocks()[4], namespace)
  model = namespace['model']
  reference = namespace['_reference']
  trained = jr.nnx.to_linen(model)
  body = {k: v for k, v in trained['params'].items() if k != 'head'}
  _assert_same(body, {k: v for k, v in reference['params'].items() if k != 'head'})
  _assert_same(trained['batch_stats'], reference['batch_stats'])
  assert float(namespace['loss']) < np.log(NUM_CLASSES)
  assert int(namespace['optimizer'].step[...]) == 5
  _run(_blocks()[5], namespace)
  grads = namespace['grads']
  assert {jr.finetune.path_of(p) for p, _ in jax.tree_util.tree_flatten_with_path(
      grads, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]} == {'head/bias', 'head/kernel'}
  assert namespace['model'].head.out_features == 3
  assert namespace['model'](namespace['images']).shape == (8, 3)
