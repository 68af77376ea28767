"""Test settings: CPU only, and XLA's slow optimisation passes off (tests use tiny inputs, so
compile time dominates; numerics are unchanged at the tolerances asserted)."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# 8 simulated CPU devices for the data-parallel tests (DESIGN.md); single-device tests use one.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

import jax  # noqa: E402

jax.config.update('jax_disable_most_optimizations', True)
