"""paths: the counts are C(n, k) and sum to 2^n; the gated gradients of all 2^n paths add up
to the ungated gradient; a path of length 0 (all shortcuts) carries the gradient of the head
alone; the CLI reports the numbers it returned."""

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, paths

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

TINY = 'stage_sizes=(2,1);stage_widths=(4,8);stem_width=4'


@pytest.mark.parametrize('n', [0, 1, 3, 9, 54])
def test_path_counts_are_binomial_and_sum_to_2_to_the_n(n):
  counts = paths.path_counts(n)
  assert len(counts) == n + 1 and sum(counts) == 2 ** n
  assert counts == counts[::-1]


def _ungated_gradient(subject, images, labels, eps):
  """dL/dx_0 (sum of cross-entropies) without any gate, by adding eps at the first block."""
  def loss(eps):
    def add(index, module, x, kwargs, call):
      return call(x + eps if index == 0 else x)
    with common.intercept(common.BlockInterceptor(add)):
      logits = subject.model.apply(subject.variables, images, train=False)
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(logp[jnp.arange(len(labels)), labels])
  return jax.grad(loss)(eps)


@pytest.mark.parametrize('name', ['resnet20', 'preact_resnet110'])
def test_all_paths_add_up_to_the_full_gradient(name, x64):
  """An identity of maths: checked in float64, near round-off."""
  subject = common.init_subject(f'{name}:{TINY}', dtype='float64')
  images = jax.random.normal(jax.random.key(4), (4, 16, 16, 3), jnp.float64)
  labels = jnp.asarray([1, 3, 5, 7])
  eps = jnp.zeros((4, 16, 16, 4), jnp.float64)
  grad = jax.jit(jax.grad(paths.gated_loss(subject)))
  total = sum(grad(eps, jnp.asarray(gate, jnp.float64), images, labels)
              for gate in itertools.product([0.0, 1.0], repeat=3))
  full = _ungated_gradient(subject, images, labels, eps)
  assert full.dtype == jnp.float64
  scale = float(jnp.max(jnp.abs(full)))
  assert float(jnp.max(jnp.abs(total - full))) <= 1e-12 * scale
  # A single path is a strict part of it (the check is not vacuous).
  one = grad(eps, jnp.asarray([1.0, 0.0, 0.0], jnp.float64), images, labels)
  assert float(jnp.max(jnp.abs(one - full))) > 1e-3 * scale


def test_plain_nets_are_refused():
  subject = common.init_subject(f'plain20:{TINY}')
  with pytest.raises(ValueError, match='single path'):
    paths.path_gradients(subject, np.zeros((4, 16, 16, 3), np.float32), np.zeros(4, int),
                         draws=1, batch_size=2)


def test_cli_reports_distribution_and_gradients(tmp_path):
  out = str(tmp_path / 'paths')
  argv = ['paths', '--model', f'resnet20:{TINY}', '--draws', '2', '--batch-size', '4',
          '--out', out]
  path, result = paths.main(cli.parser().parse_args(argv), argv)
  assert result['n'] == 3 and result['counts'] == [1, 3, 3, 1] and result['count_total'] == 8
  assert np.isclose(sum(result['share']), 1.0)
  text = open(path).read()
  for value in result['mean_grad_norm'] + result['total_grad']:
    assert common.fmt(value) in text
  assert os.path.getsize(os.path.join(out, 'paths.png')) > 1000
