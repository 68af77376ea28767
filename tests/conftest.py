"""Test settings: CPU only, and XLA's slow optimisation passes off (tests use tiny inputs, so
compile time dominates; numerics are unchanged at the tolerances asserted)."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# 8 simulated CPU devices for the data-parallel tests; single-device tests use one.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

import jax  # noqa: E402  XLA_FLAGS must be set before jax starts

jax.config.update('jax_disable_most_optimizations', True)

import pytest  # noqa: E402  (after the jax setup above)


@pytest.fixture
def x64():
  """The test runs with jax_enable_x64 on (float64 arrays really are float64), restored after:
  comparisons of two computations of the same maths run in float64, where their tolerances
  can sit near round-off on any CPU."""
  previous = bool(jax.config.jax_enable_x64)
  jax.config.update('jax_enable_x64', True)
  yield
  jax.config.update('jax_enable_x64', previous)
