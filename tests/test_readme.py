"""The README's notebook example runs as printed: the train step without a ConfigDict."""

import math
import os
import re

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
