"""BatchNorm as torch computes and keeps it: the biased batch variance normalises, the running
variance takes the unbiased one (n / (n - 1)), statistics run in promote(float32, dtype), and
the variance stays accurate when |mean| >> std."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_resnet.layers import BatchNorm


def _train_step(x, dtype=jnp.float32, param_dtype=jnp.float32, momentum=0.9):
  """A train-mode apply from freshly initialised variables, as a function of x."""
  norm = BatchNorm(use_running_average=False, momentum=momentum, dtype=dtype,
                   param_dtype=param_dtype)
  variables = norm.init(jax.random.key(0), x)
  apply = lambda v: norm.apply(variables, v, mutable=['batch_stats'])
  return apply(x), apply


def test_running_statistics_follow_torch_exactly(x64):
  rng = np.random.default_rng(0)
  x = rng.normal(3.0, 2.0, size=(2, 3, 5, 4))  # n = 30 values per channel
  (y, state), _ = _train_step(jnp.asarray(x), jnp.float64, jnp.float64)
  flat = x.reshape(-1, 4)
  mean, biased = flat.mean(0), flat.var(0)
  stats = state['batch_stats']
  np.testing.assert_allclose(stats['mean'], 0.1 * mean, rtol=1e-14)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-14)
  assert not np.allclose(stats['var'], 0.9 + 0.1 * biased, rtol=1e-3)  # 30/29 is visible
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(biased + 1e-5), rtol=1e-12, atol=1e-12)


def test_one_value_per_channel_keeps_the_variance_finite():
  """torch refuses n = 1 in training; here the running variance takes the (zero) biased
  variance rather than 0/0."""
  (_, state), _ = _train_step(jnp.ones((1, 1, 1, 3)))
  np.testing.assert_array_equal(state['batch_stats']['var'], np.full(3, 0.9, np.float32))


@pytest.mark.parametrize('dtype, param_dtype, compute, stored', [
    ('bfloat16', 'float32', 'float32', 'float32'),
    ('float16', 'float32', 'float32', 'float32'),
    ('float32', 'float32', 'float32', 'float32'),
    ('float64', 'float64', 'float64', 'float64'),
    ('float64', 'float32', 'float64', 'float32')])
def test_statistics_run_in_promote_float32_dtype(x64, dtype, param_dtype, compute, stored):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3, 3, 2)), dtype)
  (y, state), apply = _train_step(x, dtype, param_dtype)
  reductions = [e for e in jax.make_jaxpr(apply)(x).eqns if e.primitive.name == 'reduce_sum']
  assert len(reductions) == 3  # the mean; then deviations and their squares (two-pass)
  assert {str(e.outvars[0].aval.dtype) for e in reductions} == {compute}
  assert y.dtype == jnp.dtype(dtype)
  assert {str(v.dtype) for v in jax.tree.leaves(state)} == {stored}


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_variance_is_accurate_when_the_mean_dwarfs_the_spread(dtype):
  """mean / std = 1000: the one-pass E[x^2] - E[x]^2 would miss a large part of the variance
  here in float32 (docs/benchmarks.md); the two-pass form keeps float32 accuracy: what is left
  is the rounding of a float32 sum of 1,024 terms, at most 1024 * 2^-24 = 6e-5 in whatever
  order XLA sums (measured: docs/testing.md)."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(1000.0 + rng.normal(size=(16, 8, 8, 4)), dtype)
  exact = np.var(np.asarray(x, np.float64).reshape(-1, 4), axis=0, ddof=1)
  (_, state), _ = _train_step(x, dtype, momentum=0.0)
  np.testing.assert_allclose(state['batch_stats']['var'], exact, rtol=1e-4)
