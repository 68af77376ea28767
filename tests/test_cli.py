"""The installed program: `jax-resnet <command>` dispatch and help, the train CLI's recipe
handling and --help-config, shipped recipes by bare name, and predict working out its model."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jax_resnet as jr
from jax_resnet import __main__ as program
from jax_resnet import predict, weights
from jax_resnet.config import base, recipes

from test_weights import random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', 'jax_resnet', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_help_lists_every_command_and_no_command_is_exit_2(capsys):
  assert program.main(['--help']) == 0
  out = capsys.readouterr().out
  for name in ('train', 'predict', 'benchmark', 'analysis', 'data', 'export', 'push'):
    assert f'\n  {name} ' in out, name
  assert program.main([]) == 2
  assert program.main(['trian']) == 2
  assert capsys.readouterr().err.splitlines()[-1] == (
      "jax-resnet: error: unknown command 'trian'; the commands are train, predict, benchmark, "
      'analysis, data, export, push (jax-resnet --help).')


def test_a_command_whose_module_is_absent_is_one_line(monkeypatch, capsys):
  monkeypatch.setitem(program.COMMANDS, 'export', ('jax_resnet.no_such_module', 'absent'))
  assert program.main(['export', '--out', 'x']) == 2
  assert capsys.readouterr().err == (
      'jax-resnet: error: the export command is not part of this jax_resnet version (no module '
      'jax_resnet.no_such_module); upgrade jax_resnet to use it.\n')


@pytest.mark.parametrize('name', ['predict', 'benchmark', 'analysis', 'data'])
def test_each_command_help_names_itself_and_shows_an_example(name, capsys):
  with pytest.raises(SystemExit) as exit_:
    program.main([name, '--help'])
  assert exit_.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith(f'usage: jax-resnet {name} ')
  assert f'  jax-resnet {name} ' in out.split('\n\n', 1)[1]  # an example, after the usage


def test_benchmark_and_predict_help_show_defaults(capsys):
  with pytest.raises(SystemExit):
    program.main(['benchmark', '--help'])
  out = ' '.join(capsys.readouterr().out.split())
  assert "the trainer's data parallelism (default: shard_map)" in out
  assert 'timed steps (default: 10)' in out
  with pytest.raises(SystemExit):
    program.main(['predict', '--help'])
  assert 'classes to print per image (default: 5)' in ' '.join(capsys.readouterr().out.split())


def test_train_help_exits_0_and_help_config_prints_every_key_resolved():
  help_ = _run('train', '--help')
  assert help_.returncode == 0, help_.stderr
  assert help_.stdout.startswith('usage: jax-resnet train [--config RECIPE[:ARG]]')
  assert 'jax-resnet train --config r50 --help-config' in help_.stdout
  listing = _run('train', '--config', 'cifar10:resnet32', '--config.batch_size=7', '--help-config')
  assert listing.returncode == 0, listing.stderr
  lines = listing.stdout.splitlines()
  assert "model = 'resnet32'  # a name from jax_resnet.list_models()" in lines
  assert 'batch_size = 7  # global batch over all devices and hosts' in lines
  assert "model_options.shortcut = None  # 'A' zero-pad | 'B' projection | 'C' all" in lines
  assert len(lines) == len(base.key_comments()) - 1  # every leaf key; model_options is a group
  # The checkout's train.py, with a path as before: the same program.
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  by_path = subprocess.run([sys.executable, 'train.py', '--config=configs/cifar10.py:resnet32',
                            '--config.batch_size=7', '--help-config'], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
  assert (by_path.returncode, by_path.stdout) == (0, listing.stdout)


def test_train_takes_every_model_field_as_model_options_padding_included():
  """`--config.model_options.padding=same` (the Flax ImageNet example's model) is a key: the
  options are derived from the model's fields, so none is missing from the schema."""
  listing = _run('train', '--config', 'default', '--config.model=resnet18',
                 '--config.model_options.padding=same', '--help-config')
  assert listing.returncode == 0, listing.stderr
  lines = listing.stdout.splitlines()
  assert ("model_options.padding = 'same'  # 'torch' k//2 per side | 'same' XLA's 'SAME' on "
          "strided windows (the Flax ImageNet example)") in lines
  assert ("model_options.stride_in_1x1 = None  # the paper's bottleneck stride on the first "
          '1x1') in lines

def test_a_recipe_without_get_config_or_returning_none_is_one_line(tmp_path):
  (tmp_path / 'empty.py').write_text('x = 1\n')
  (tmp_path / 'none.py').write_text('def get_config():\n  pass\n')
  empty = _run('train', '--config', str(tmp_path / 'empty.py'), f'--workdir={tmp_path}/w')
  none = _run('train', f'--config={tmp_path}/none.py', f'--workdir={tmp_path}/w')
  missing = _run('train', '--config', 'r5O', f'--workdir={tmp_path}/w')
  assert (empty.returncode, none.returncode, missing.returncode) == (2, 2, 2)
  assert empty.stderr == (
      f'error: config file {tmp_path}/empty.py defines no get_config(); a recipe is a Python '
      'file whose get_config() returns an ml_collections.ConfigDict.\n')
  assert none.stderr == (
      f'error: config file {tmp_path}/none.py: get_config() returned NoneType, not an '
      'ml_collections.ConfigDict; end it with `return config`.\n')
  assert missing.stderr == (
      "error: config 'r5O' is neither a recipe file nor a shipped recipe; pass a path to a "
      f'recipe file or one of: {", ".join(recipes.list_recipes())}.\n')
  assert not os.path.exists(tmp_path / 'w')


def test_shipped_recipes_load_by_bare_name_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert jr.load_config('cifar10_resnet110').model == 'resnet110'
  assert jr.load_config('cifar10:resnet32').model == 'resnet32'
  assert jr.load_config('r50.py').model == 'resnet50'
  assert set(recipes.list_recipes()) == {
      os.path.splitext(name)[0] for name in os.listdir(os.path.join(ROOT, 'configs'))
      if name.endswith('.py') and name != '__init__.py'}


def test_pyproject_lists_every_package_and_maps_configs_to_the_recipes():
  tomllib = pytest.importorskip('tomllib')
  setuptools = pytest.importorskip('setuptools')
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    tool = tomllib.load(f)['tool']['setuptools']
  found = setuptools.find_packages(ROOT, include=['jax_resnet*'])
  assert sorted(tool['packages']) == sorted(found + ['jax_resnet.recipes'])
  assert tool['package-dir'] == {'jax_resnet.recipes': 'configs'}


def _image(tmp_path, size=(48, 40)):
  path = str(tmp_path / 'img.png')
  pixels = np.random.RandomState(0).randint(0, 255, size[::-1] + (3,), np.uint8)
  Image.fromarray(pixels).save(path)
  return path


def test_predict_feeds_a_small_native_input_model_at_its_own_size(tmp_path, capsys):
  image = _image(tmp_path)
  variables = random_variables('resnet20', seed=3)
  path = weights.save_npz(tmp_path / 'r20.npz', variables)
  assert program.main(['predict', '--model', 'resnet20', '--weights', path, '--top', '3',
                       image]) == 0
  pixels = predict.preprocess(Image.open(image), resize=32, crop=32)
  assert pixels.shape == (32, 32, 3)
  expected = predict.classify('resnet20', variables, pixels[None])[0]
  assert capsys.readouterr().out == predict.format_predictions(
      image, predict.top_k(expected, 3), []) + '\n'


def test_predict_works_out_the_model_from_a_tag_or_a_workdir(tmp_path, capsys):
  parse = lambda *args: predict._parser().parse_args([*args, 'img.png'])
  tagged = weights.save_npz(tmp_path / 'tagged.npz', random_variables('resnet18', seed=1),
                            tag='resnet18.a1_in1k')
  assert predict.load_weights(parse('--weights', tagged), weights).model == 'resnet18'
  assert predict.load_weights(parse('--weights', tagged, '--model', 'resnet18'),
                              weights).model == 'resnet18'
  # The tag names the model of a file that does not say it (resnet20 and plain20 hold the
  # same arrays).
  plain = weights.save_npz(tmp_path / 'plain.npz', random_variables('resnet20', seed=1))
  found = predict.load_weights(parse('--weights', plain, '--model', 'plain20'), weights)
  assert found.model == 'plain20'
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps({'model': 'resnet20', 'image_size': 16}))
  args = parse('--weights', str(workdir))
  assert predict._transform(args, weights, 32) == dict(resize=16, crop=16)
  assert predict.main(['--weights', plain, 'img.png']) == 2
  assert capsys.readouterr().err == (
      f'predict: error: {plain} does not say which model it holds (no weight tag, and its '
      'arrays fit no single registered model); pass --model NAME (a name from '
      'jax_resnet.list_models()).\n')


def test_training_curves_from_metrics_jsonl(tmp_path):
  from jax_resnet.training.curves import plot_curves, read_curves
  rows = [{'step': 2, 'split': 'train', 'loss': 2.0, 'error': 0.75},
          {'step': 4, 'split': 'train', 'loss': 1.5, 'error': 0.5},
          {'step': 4, 'split': 'eval', 'loss': 1.25, 'top1': 0.625, 'count': 8.0},
          {'step': 4, 'split': 'train', 'loss': 1.0, 'error': 0.25}]  # resumed: rewritten
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(row) + '\n' for row in rows))
  assert read_curves(str(tmp_path)) == {'train': ([2, 4], [2.0, 1.0], [0.25, 0.75]),
                                        'eval': ([4], [1.25], [0.625])}
  path = plot_curves(str(tmp_path))
  assert path == str(tmp_path / 'curves.png')
  with Image.open(path) as image:
    assert (image.format, image.size) == ('PNG', (1000, 400))


def test_no_curves_for_a_run_that_logged_nothing(tmp_path):
  from jax_resnet.training.curves import plot_curves
  assert plot_curves(str(tmp_path)) is None  # stopped before its first step: no metrics.jsonl
  (tmp_path / 'metrics.jsonl').write_text('')
  assert plot_curves(str(tmp_path)) is None
  assert os.listdir(tmp_path) == ['metrics.jsonl']


def test_false_alarms_are_dropped_and_other_lines_kept():
  from absl import logging as absl_logging
  from jax_resnet import false_alarms
  false_alarms.install()
  record = lambda module, msg, *args: logging.LogRecord(
      'absl', logging.WARNING, f'/site-packages/x/{module}.py', 1, msg, args, None)
  kept = [f.filter(r) for f in logging.getLogger('absl').filters
          if isinstance(f, false_alarms.FalseAlarmFilter)
          for r in (record('checkpoint_manager', 'Given directory is read only=%s', '/w'),
                    record('file_utils', 'Variant folder %s has no %s', '/d', 'x.json'),
                    record('checkpoint_manager', 'Saving checkpoint at step %s', 3))]
  assert kept == [False, False, True]
  assert absl_logging.get_absl_logger() is logging.getLogger('absl')


def test_every_script_answers_help_without_running():
  """Each scripts/*.py under runpy in one interpreter (jax imported once), then the shell one."""
  scripts = sorted(name for name in os.listdir(os.path.join(ROOT, 'scripts'))
                   if name.endswith('.py'))
  code = '''
import contextlib, io, json, runpy, sys
results = {}
for script in sys.argv[1:]:
  sys.argv, out = [script, '--help'], io.StringIO()
  with contextlib.redirect_stdout(out):
    try:
      runpy.run_path(script, run_name='__main__')
      code = None
    except SystemExit as exit_:
      code = exit_.code
  results[script] = (code, out.getvalue().splitlines()[0] if out.getvalue() else '')
print(json.dumps(results))
'''
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  done = subprocess.run([sys.executable, '-c', code, *scripts], cwd=os.path.join(ROOT, 'scripts'),
                        env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  results = json.loads(done.stdout.splitlines()[-1])
  assert {name: (code, line.split(' ', 2)[:2]) for name, (code, line) in results.items()} == {
      name: (0, ['usage:', name]) for name in scripts}
  shell = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'gpu_check.sh'), '--help'],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert shell.returncode == 0 and shell.stdout.startswith('One prepared run of the GPU checks')
