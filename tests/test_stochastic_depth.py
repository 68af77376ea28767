"""Stochastic depth (Huang et al. 2016): per-sample branch drops, linear decay, eval unscaled."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compiled
import jax_resnet as jr
from jax_resnet.layers import DropPath, drop_path_rates

X = jax.random.normal(jax.random.key(3), (256, 8, 8, 3))


def _model_and_vars(rate):
  model = jr.create_model('resnet20', drop_path_rate=rate)
  return model, model.init(jax.random.key(0), X[:2], train=False)


def test_linear_decay_rule():
  assert drop_path_rates(0.5, 4) == [0.125, 0.25, 0.375, 0.5]
  model = jr.create_model('resnet20', drop_path_rate=0.45)
  assert model.drop_path_rate == 0.45


def test_eval_is_deterministic_and_unscaled():
  model, variables = _model_and_vars(0.5)
  reference = jr.create_model('resnet20')
  out = model.apply(variables, X[:8], train=False)
  np.testing.assert_array_equal(out, model.apply(variables, X[:8], train=False))
  np.testing.assert_array_equal(out, reference.apply(variables, X[:8], train=False))


def test_rate_zero_equals_the_forward_without_drop_path():
  model, variables = _model_and_vars(0.0)
  out, _ = model.apply(variables, X[:8], train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(5)})
  ref, _ = jr.create_model('resnet20').apply(variables, X[:8], train=True,
                                             mutable=['batch_stats'])
  np.testing.assert_array_equal(out, ref)


def test_train_drops_whole_branches_per_sample_at_the_configured_rate():
  model, variables = _model_and_vars(0.6)
  _, state = model.apply(variables, X, train=True, mutable=['batch_stats', 'intermediates'],
                         rngs={'dropout': jax.random.key(11)})
  rates = drop_path_rates(0.6, 9)
  for index, block in ((0, 'stage1_block1'), (8, 'stage3_block3')):
    residual = state['intermediates'][block]['residual'][0]
    per_sample = jnp.abs(residual).reshape(X.shape[0], -1)
    dropped = per_sample.max(axis=1) == 0
    kept = per_sample.min(axis=1) > 0
    # Whole branches: a sample's residual is all zero or dense (no partial masks).
    assert int(dropped.sum() + kept.sum()) == X.shape[0]
    p, n = rates[index], X.shape[0]
    assert abs(float(dropped.mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_kept_branches_are_scaled_so_expectations_match_eval():
  branch = jnp.ones((20000, 2, 2, 1))
  out = DropPath(0.3).apply({}, branch, deterministic=False,
                            rngs={'dropout': jax.random.key(0)})
  values = np.unique(np.asarray(out))
  np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)
  assert abs(float(out.mean()) - 1.0) < 4 * math.sqrt(0.3 / 0.7 / 20000)
  np.testing.assert_array_equal(DropPath(0.3).apply({}, branch, deterministic=True), branch)


@pytest.mark.parametrize('name, overrides', [
    ('resnet26d', dict(stage_sizes=(1, 1, 1, 1), stage_widths=(16, 32, 64, 128))),
    # 64 wide, not 32: GroupNorm's 32 groups of one channel would zero a 1x1 map exactly.
    pytest.param('bit_resnet50x1',
                 dict(stage_sizes=(1, 1, 1, 1), stem_width=32, stage_widths=(64,) * 4),
                 marks=pytest.mark.slow)])  # 14 s; resnet26d keeps the rule in the default run
def test_resnet_d_and_bit_follow_the_same_rule(name, overrides):
  """Four blocks at drop_path_rate 0.6: block l drops with probability 0.15 * l, whole branches
  per sample; eval is the net without stochastic depth."""
  x = jax.random.normal(jax.random.key(3), (128, 32, 32, 3))
  model = jr.create_model(name, drop_path_rate=0.6, **overrides)
  variables = compiled.init(model, jax.random.key(0), x[:2], train=False)
  np.testing.assert_array_equal(
      compiled.apply(model, variables, x[:4], train=False),
      compiled.apply(jr.create_model(name, **overrides), variables, x[:4], train=False))
  _, state = compiled.apply(model, variables, x, train=True,
                            mutable=['batch_stats', 'intermediates'],
                            rngs={'dropout': jax.random.key(11)})
  for stage, p in ((1, 0.15), (4, 0.6)):
    residual = state['intermediates'][f'stage{stage}_block1']['residual'][0]
    per_sample = jnp.abs(residual).reshape(x.shape[0], -1)
    dropped = per_sample.max(axis=1) == 0
    assert int(dropped.sum() + (per_sample.min(axis=1) > 0).sum()) == x.shape[0]
    assert abs(float(dropped.mean()) - p) < 4 * math.sqrt(p * (1 - p) / x.shape[0])
