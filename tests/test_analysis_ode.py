"""ode: at L = K steps the interpolated net is the base net itself (same logits), deeper nets
with h = 1/L approach each other while h = 1 ones do not; the CLI reports its numbers."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, ode

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

TINY = 'stage_sizes=(1,1);stage_widths=(4,8);stem_width=4'


def _images():
  return jax.random.normal(jax.random.key(5), (4, 16, 16, 3))


def test_depth_equal_to_knots_reproduces_the_base_net():
  images = _images()
  base = jr.create_model('preact_resnet110', stage_sizes=(4, 4), stage_widths=(4, 8),
                         stem_width=4, residual_scale=1 / 3)
  variables = base.init(jax.random.key(0), images[:1], train=False)
  outputs = ode.ode_outputs(f'preact_resnet110:{TINY}', images, depths=(3,), knots=3, seed=0)
  np.testing.assert_allclose(outputs[3]['logits'], base.apply(variables, images, train=False),
                             rtol=1e-6, atol=1e-6)


def test_interpolation_is_linear_between_knots():
  knots = [{'w': jnp.full(2, 0.0)}, {'w': jnp.full(2, 3.0)}, {'w': jnp.full(2, 6.0)}]
  assert float(ode._interpolate(knots, 0.5)['w'][0]) == 3.0  # the middle knot
  assert float(ode._interpolate(knots, 0.0)['w'][0]) == 0.0  # clamped before the first
  np.testing.assert_allclose(ode._interpolate(knots, 1 / 3)['w'], 1.5, rtol=1e-6)


def test_cli_convergence_with_h_one_over_l(tmp_path):
  out = str(tmp_path / 'ode')
  argv = ['ode', '--model', f'preact_resnet110:{TINY}', '--depths', '2,4,8,16', '--examples',
          '8', '--out', out]
  path, result = ode.main(cli.parser().parse_args(argv), argv)
  scaled, control = result['scaled'], result['unscaled']
  assert scaled['depths'] == [2, 4, 8, 16]
  assert scaled['stage1_successive'][-1] < scaled['stage1_successive'][0] / 2
  assert min(control['stage1_successive']) > max(scaled['stage1_successive'][1:])
  text = open(path).read()
  for value in scaled['stage1_to_deepest'] + scaled['logits_to_deepest']:
    assert common.fmt(value) in text
  assert common.fmt(scaled['stage1_order']) in text
  assert os.path.getsize(os.path.join(out, 'ode_convergence.png')) > 1000
