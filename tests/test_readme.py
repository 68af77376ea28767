"""The README's notebook example runs as printed: the train step without a ConfigDict."""

import math
import os
import re

import jax
import numpy as np

import jax_resnet as jr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_block_with(text: str) -> str:
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  matches = [b for b in blocks if text in b]
  assert len(matches) == 1, f'{len(matches)} README python blocks contain {text!r}'
  return matches[0]


def test_readme_train_step_example_runs_without_a_config():
  source = _python_block_with('make_train_step(')
  assert len(source.strip().splitlines()) <= 11  # the ten-line promise, plus the import line
  assert 'ConfigDict' not in source and 'config' not in source.replace('jax.config', '')
  namespace = {}
  exec(compile(source, 'README.md', 'exec'), namespace)  # noqa: S102  the README's own code
  metrics = namespace['metrics']
  # All-zero images: every logit is the zero-initialised head bias, so the loss is ln(10) and
  # the warmup schedule's first rate is 0.
  assert abs(float(metrics['loss']) - math.log(10)) < 1e-5
  assert float(metrics['learning_rate']) == 0.0
  assert int(namespace['state'].step) == 1


def test_readme_nnx_example_trains_and_returns_linen_variables():
  source = _python_block_with('jr.nnx.create_model(')
  namespace = {}
  exec(compile(source, 'README.md', 'exec'), namespace)  # noqa: S102  the README's own code
  # All-zero images: every feature is 0 (BatchNorm of a constant map), so the logits are the
  # zero-initialised head bias and the loss ln(10); the step moves that bias only (ReLU's
  # gradient at 0 is 0), by -0.1 * (softmax - one_hot(0)): +0.09 for class 0, -0.01 others.
  assert abs(float(namespace['loss']) - math.log(10)) < 1e-5
  assert int(namespace['optimizer'].step[...]) == 1
  bias = namespace['variables']['params']['head']['bias']
  np.testing.assert_allclose(bias, [0.09] + [-0.01] * 9, rtol=1e-5)
  np.testing.assert_allclose(namespace['logits'], np.broadcast_to(bias, (8, 10)), atol=1e-6)
  # The model rebuilt from the Linen variables computes what Linen's apply does with them.
  rebuilt = namespace['model']
  rebuilt.eval()
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  linen = jr.create_model('resnet20').apply(namespace['variables'], x, train=False)
  np.testing.assert_array_equal(rebuilt(x), linen)
