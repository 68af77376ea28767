"""Test settings: CPU only, and XLA's slow optimisation passes off (tests use tiny inputs, so
compile time dominates; numerics are unchanged at the tolerances asserted)."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

jax.config.update('jax_disable_most_optimizations', True)
