"""Test settings: CPU only, and XLA's slow optimisation passes off (tests use tiny inputs, so
compile time dominates; numerics are unchanged at the tolerances asserted).

The default run (`python -m pytest -q`) deselects the tests marked slow; `--all` runs them too
(`-m slow` runs only them, `-m "not slow"` the default selection). Compiled programs go to JAX's
persistent compilation cache under .pytest_cache/, shared by the tests, the processes they start
and later runs (JAX_COMPILATION_CACHE_DIR chooses another folder; an empty value turns it off).
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Set in the environment before jax starts, so that subprocesses (the train CLI's tests) share
# the cache; the thresholds let the many small test programs in.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(ROOT, '.pytest_cache', 'jax_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
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


def pytest_addoption(parser):
  parser.addoption('--all', action='store_true',
                   help='also run the tests marked slow (long numerical and every-model checks), '
                        'which the default run deselects')


def pytest_collection_modifyitems(config, items):
  """Without --all or a -m expression, the tests marked slow are deselected. Then the files are
  ordered for the workers: pytest-xdist (`--dist loadfile --no-loadscope-reorder`) hands out
  whole files in this order, so the files with the most slow tests (the long ones) start first
  and the short files fill the end, rather than a long file starting last on one worker while
  the other has nothing left."""
  if not (config.getoption('--all') or config.getoption('markexpr')):
    slow = [item for item in items if item.get_closest_marker('slow')]
    if slow:
      config.hook.pytest_deselected(items=slow)
      items[:] = [item for item in items if not item.get_closest_marker('slow')]
  by_file = {}
  for item in items:
    by_file.setdefault(item.nodeid.split('::', 1)[0], []).append(item)
  def heavier_first(tests):
    return (-sum(1 for item in tests if item.get_closest_marker('slow')), -len(tests))
  items[:] = [item for tests in sorted(by_file.values(), key=heavier_first) for item in tests]
