"""degradation: a tiny run of two nets through the trainer; the table and the curves are the
workdirs' own summary.json and metrics.jsonl; a finished workdir is reused, not retrained."""

import json
import os

import pytest

from jax_resnet.analysis import __main__ as cli
from jax_resnet.analysis import common, degradation
from jax_resnet.config import resolve

# The research tools' long numerical checks, built on the model code the other tests cover:
# CI runs them in its newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

SETS = ['num_train_steps=4', 'batch_size=32', 'eval_batch_size=120', 'log_every_steps=2',
        'eval_every_steps=2', 'checkpoint_every_steps=4', 'warmup_epochs=0']


def test_tiny_degradation_run_reports_the_workdirs_numbers(tmp_path):
  out = str(tmp_path / 'deg')
  argv = ['degradation', '--models', 'plain20,resnet20', '--out', out]
  for item in SETS:
    argv += ['--set', item]
  path, results = degradation.main(cli.parser().parse_args(argv), argv)
  text = open(path).read()
  assert [r['model'] for r in results] == ['plain20', 'resnet20']
  assert [r['residual'] for r in results] == [False, True]
  for r in results:
    with open(os.path.join(out, 'runs', r['model'], 'summary.json')) as f:
      summary = json.load(f)
    assert r['steps'] == summary['steps'] == 4
    assert r['final_test_error'] == 1.0 - summary['final_eval_top1']
    assert r['train_steps'] == [2, 4] and r['test_steps'] == [2, 4]
    assert r['test_error'][-1] == r['final_test_error']
    assert common.fmt(r['final_test_error']) in text
    assert common.fmt(r['final_train_error']) in text
    assert not r['reused']
  assert os.path.getsize(os.path.join(out, 'degradation.png')) > 1000
  # Rerunning reuses the finished workdirs and reads the same numbers back.
  _, again = degradation.main(cli.parser().parse_args(argv), argv)
  assert all(r['reused'] for r in again)
  assert [r['final_test_error'] for r in again] == [r['final_test_error'] for r in results]


def test_recipes_and_overrides():
  config = degradation.recipe('plain56', 'cifar10')
  assert config.model == 'plain56' and config.num_train_steps == 64_000
  assert config.lr_boundaries == (32_000, 48_000)
  config = degradation.recipe('resnet32', 'digits', {'num_train_steps': '7', 'nesterov': 'true',
                                                      'learning_rate': '0.05'})
  assert (config.model, config.num_train_steps, config.nesterov) == ('resnet32', 7, True)
  assert config.learning_rate == 0.05
  config = degradation.recipe('resnet32', 'cifar10')  # no cifar10_resnet32.py: cifar10.py
  assert (config.model, config.dataset, config.lr_boundaries) == ('resnet32', 'cifar10',
                                                                  (32_000, 48_000))
  # Model options by their dotted keys: the value as a Python literal (the option is unset).
  config = degradation.recipe('resnet20', 'digits', {'model_options.shortcut': 'B',
                                                     'model_options.drop_path_rate': '0.1',
                                                     'model_options.stage_sizes': '(1, 1, 1)'})
  options = config.model_options
  assert (options.shortcut, options.drop_path_rate, options.stage_sizes) == ('B', 0.1,
                                                                             (1, 1, 1))
  kwargs = resolve(config).model_kwargs
  assert (kwargs['shortcut'], kwargs['drop_path_rate'], kwargs['stage_sizes']) == (
      'B', 0.1, (1, 1, 1))
  for key in ('shortcut', 'model_options.nonsense', 'nonsense.shortcut'):
    with pytest.raises(ValueError) as err:
      degradation.recipe('resnet20', 'digits', {key: 'B'})
    assert str(err.value) == (f'unknown config key {key!r} in --set; see '
                              'jax_resnet/config/base.py.')
