"""The programs catch `UserError` alone (docs/architecture.md, "Layers"): a ValueError raised
inside, a bug rather than bad input, keeps its traceback instead of becoming a one-line exit 2.
Each test makes one internal function of a program raise ValueError and runs the program."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUG = 'an internal bug, not bad input'


def _run_with_bug(target: str, argv: list, cwd) -> subprocess.CompletedProcess:
  """`jax-resnet *argv` in a fresh interpreter with `target` ('module:function') raising
  ValueError(BUG)."""
  module, function = target.split(':')
  code = (f'import importlib, sys\n'
          f'def bug(*args, **kwargs):\n  raise ValueError({BUG!r})\n'
          f'setattr(importlib.import_module({module!r}), {function!r}, bug)\n'
          f'from jax_resnet.__main__ import main\nsys.exit(main({argv!r}))\n')
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-c', code], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def _assert_traceback(run):
  assert run.returncode == 1, (run.returncode, run.stderr)
  assert 'Traceback (most recent call last):' in run.stderr
  assert run.stderr.rstrip().splitlines()[-1] == f'ValueError: {BUG}'


def test_train_shows_an_internal_value_error_with_its_traceback(tmp_path):
  _assert_traceback(_run_with_bug('jax_resnet.config.run:resolve',
                                  ['train', '--config', 'default', f'--workdir={tmp_path}/w'],
                                  tmp_path))
  assert not (tmp_path / 'w').exists()


def test_analysis_shows_an_internal_value_error_with_its_traceback(tmp_path):
  run = _run_with_bug('jax_resnet.analysis.common:data_spec',
                      ['analysis', 'gradflow', '--models', 'resnet20', '--out',
                       str(tmp_path / 'out')], tmp_path)
  _assert_traceback(run)
  assert 'error: ' + BUG not in run.stderr


def test_benchmark_shows_an_internal_value_error_with_its_traceback(tmp_path):
  run = _run_with_bug('jax_resnet:model_info',
                      ['benchmark', '--model', 'resnet20', '--batch-size', '2', '--steps', '1'],
                      tmp_path)
  _assert_traceback(run)
  assert 'error: ' + BUG not in run.stderr
