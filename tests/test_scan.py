"""`scan_blocks=True`: the same network as the unrolled one, with exactly convertible weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compiled
import jax_resnet as jr


def _variables(name, x, **overrides):
  model = jr.create_model(name, **overrides)
  return model, compiled.init(model, jax.random.key(0), x, train=False)


SLOW = pytest.mark.slow  # where CI runs the slow tests; resnet20 by default


@pytest.mark.parametrize('name, shape, overrides', [
    ('resnet20', (2, 16, 16, 3), {}),
    pytest.param('preact_resnet164', (2, 8, 8, 3), {'stage_sizes': (4, 4, 4)}, marks=SLOW),
    pytest.param('resnet26d', (2, 40, 40, 3), {'stage_sizes': (1, 3, 1, 1),
                                                'stage_widths': (16, 32, 64, 128)}, marks=SLOW),
    pytest.param('bit_resnet50x1', (2, 40, 40, 3), {'stage_sizes': (1, 3, 1, 1), 'stem_width': 32,
                                                     'stage_widths': (32,) * 4}, marks=SLOW),
    pytest.param('resnet50', (4, 64, 64, 3), {}, marks=pytest.mark.slow)])
def test_scanned_model_equals_unrolled_with_converted_weights(name, shape, overrides, x64):
  """The same maths in another order, so compared in float64, to 1e-10 of the largest logit in
  eval and train mode (float32 would measure the CPU's summation order, which batch statistics
  over a few tiny images amplify far past round-off)."""
  overrides = {**overrides, 'dtype': 'float64', 'param_dtype': 'float64'}
  x = jax.random.normal(jax.random.key(1), shape, jnp.float64)
  unrolled, variables = _variables(name, x, **overrides)
  scanned = jr.create_model(name, scan_blocks=True, **overrides)
  stacked = jr.stack_blocks(variables, unrolled.stage_sizes)
  expected_tree = jax.eval_shape(lambda: scanned.init(jax.random.key(0), x, train=False))
  assert jax.tree.structure(stacked) == jax.tree.structure(expected_tree)
  assert jax.tree.map(jnp.shape, stacked) == jax.tree.map(jnp.shape, expected_tree)
  for train, tolerance in ((False, 1e-10), (True, 1e-10)):
    ref = compiled.apply(unrolled, variables, x, train=train, mutable=['batch_stats'])
    out = compiled.apply(scanned, stacked, x, train=train, mutable=['batch_stats'])
    scale = float(jnp.max(jnp.abs(ref[0])))
    np.testing.assert_allclose(out[0], ref[0], rtol=0, atol=tolerance * scale)
    new_stats = jr.unstack_blocks(out[1]).get('batch_stats', {})  # none under GroupNorm
    assert jax.tree.structure(new_stats) == jax.tree.structure(ref[1].get('batch_stats', {}))
    for a, b in zip(jax.tree.leaves(new_stats), jax.tree.leaves(ref[1].get('batch_stats', {}))):
      assert a.dtype == b.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_round_trip_is_exact_and_parameter_counts_agree():
  x = jnp.ones((1, 16, 16, 3))
  model, variables = _variables('resnet56', x)
  stacked = jr.stack_blocks(variables, model.stage_sizes)
  assert stacked['params']['stage2_scan']['block']['conv1']['kernel'].shape == (8, 3, 3, 32, 32)
  assert 'stage2_block2' not in stacked['params'] and 'stage2_block1' in stacked['params']
  back = jr.unstack_blocks(stacked)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  assert jr.count_params(stacked['params']) == 853_018


def test_scanned_stochastic_depth_keeps_the_linear_rule():
  x = jax.random.normal(jax.random.key(2), (512, 8, 8, 3))
  model, variables = _variables('resnet20', x[:2], scan_blocks=True, drop_path_rate=0.6)
  _, state = compiled.apply(model, variables, x, train=True,
                            mutable=['batch_stats', 'intermediates'],
                            rngs={'dropout': jax.random.key(4)})
  residual = state['intermediates']['stage3_scan']['block']['residual'][0]  # blocks 8, 9
  assert residual.shape[0] == 2
  dropped = (jnp.abs(residual).reshape(2, 512, -1).max(-1) == 0).mean(-1)
  expected = np.array([0.6 * 8 / 9, 0.6])
  np.testing.assert_allclose(dropped, expected, atol=4 * np.sqrt(0.25 / 512))
