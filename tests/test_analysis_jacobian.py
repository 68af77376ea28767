"""jacobian: d x_L/d x_l equals the ordered product of the factors near float64 round-off (and
provably not without the identity), power iteration agrees with a dense SVD, and the bound
holds."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, jacobian

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

TINY = 'stage_sizes=(3,1);stage_widths=(4,8);stem_width=4'


def _image():
  return jax.random.normal(jax.random.key(2), (1, 16, 16, 3))


def test_product_formula_holds_for_preact_and_masked_post_activation_blocks(x64):
  image = jax.image.resize(_image(), (1, 4, 4, 3), 'linear').astype(jnp.float64)
  pre = jacobian.product_check(
      common.init_subject('preact_resnet110:' + TINY, dtype='float64'), image)
  assert pre['blocks'] == ['stage1_block1', 'stage1_block2', 'stage1_block3']
  assert pre['dim'] == 4 * 4 * 4
  assert pre['relative_error'] <= 1e-12
  assert pre['relative_error_naive'] == pre['relative_error']  # no ReLU after the merge
  assert pre['relative_error_without_identity'] > 0.1  # the check is not vacuous
  post = jacobian.product_check(common.init_subject('resnet20:' + TINY, dtype='float64'),
                                image)
  assert post['relative_error'] <= 1e-12
  assert post['relative_error_naive'] > 1e-2  # the ReLU masks matter in v1 blocks


def test_power_iteration_equals_dense_svd_and_bound_holds():
  subject = common.init_subject('preact_resnet110:' + TINY)
  x = jax.image.resize(_image(), (1, 4, 4, 3), 'linear')
  blocks = common.find_blocks(subject, x)
  _, inputs = common.block_inputs(subject, x)
  for info, x_i in zip(blocks[:2], inputs[:2]):
    branch = common.branch_fn(info, subject.variables)
    flat_branch = lambda v, branch=branch, shape=x_i.shape: branch(v.reshape(shape)).reshape(-1)
    dense = jax.jacfwd(flat_branch)(x_i.reshape(-1))
    exact = float(np.linalg.norm(np.asarray(dense), 2))
    assert abs(jacobian.spectral_norm(branch, x_i, iters=300) - exact) <= 1e-3 * exact
  result = jacobian.spectral_analysis(subject, x, iters=200)
  assert result['run'] == ['stage1_block1', 'stage1_block2', 'stage1_block3']
  assert result['product_norm'] <= result['bound'] * (1 + 1e-4)
  assert result['product_norm'] <= result['product_of_block_norms'] * (1 + 1e-4)


def test_identity_runs_skip_shape_changing_blocks():
  subject = common.init_subject('resnet18:stage_sizes=(1,2);stage_widths=(4,8);stem_width=4')
  blocks = common.find_blocks(subject, jnp.zeros((1, 16, 16, 3)))
  assert [b.downsampling for b in blocks] == [False, True, False]
  assert [b.projection for b in blocks] == [False, True, False]
  assert jacobian.identity_runs(blocks) == [[0], [2]]


def test_cli_report_contains_returned_numbers(tmp_path):
  out = str(tmp_path / 'jac')
  argv = ['jacobian', '--models', f'preact_resnet110:{TINY},plain20:{TINY}', '--check-size',
          '4', '--iters', '20', '--out', out]
  path, results = jacobian.main(cli.parser().parse_args(argv), argv)
  text = open(path).read()
  assert common.fmt(results[0]['check']['relative_error']) in text
  for r in results:
    s = r['spectral']
    for value in s['branch_norms'] + [s['product_norm'], s['bound'], s['all_blocks_norm']]:
      assert common.fmt(value) in text
  assert results[1]['check'] == {'skipped': 'plain net'}
  assert os.path.getsize(os.path.join(out, 'jacobian_norms.png')) > 1000
