"""Every refusal of the command-line programs is one `error:` line and exit 2, found before any
work and leaving nothing behind: the train CLI's recipe and flags (each command line in a forked
child of one process, tests/cli_forks.py; the unreadable recipe as a real non-root user), the
benchmark's and the analysis tools' arguments (in-process: they are parsed before JAX runs)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from jax_resnet import benchmark
from jax_resnet.analysis import __main__ as analysis_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = 65534


def _run_train_cases(cases, folder):
  """[(code, stdout, stderr)] of `python train.py ARGS` for each ARGS in `cases`, run in
  `folder` (each case: (args, uid or None))."""
  spec = [{'argv': ['train.py', *args], 'cwd': folder, 'uid': uid} for args, uid in cases]
  cases_path, results_path = (os.path.join(folder, name) for name in ('cases.json',
                                                                        'results.json'))
  with open(cases_path, 'w') as f:
    json.dump(spec, f)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'cli_forks.py'),
                  'jax_resnet.train_cli', cases_path, results_path], env=env, check=True,
                 timeout=300)
  with open(results_path) as f:
    results = [(r['code'], r['out'], r['err']) for r in json.load(f)]
  os.remove(cases_path)
  os.remove(results_path)
  return results


@pytest.fixture
def open_folder():
  """A folder every user can enter (pytest's tmp_path is root's alone)."""
  folder = tempfile.mkdtemp(prefix='cli_refusals_')
  os.chmod(folder, 0o755)
  yield folder
  shutil.rmtree(folder)


def test_train_refusals_are_one_line_exit_2_and_leave_nothing(open_folder):
  folder = open_folder
  notes = os.path.join(folder, 'notes.md')
  unreadable = os.path.join(folder, 'secret.py')
  broken = os.path.join(folder, 'broken.py')
  counted = os.path.join(folder, 'counted.py')
  count_file = os.path.join(folder, 'executions.txt')
  with open(notes, 'w') as f:
    f.write('# My notes\n\nNot a recipe.\n')
  shutil.copy(os.path.join(ROOT, 'configs', 'default.py'), unreadable)
  os.chmod(unreadable, 0)
  with open(broken, 'w') as f:
    f.write('def get_config(:\n')
  with open(counted, 'w') as f:
    f.write(f'from jax_resnet import base_config\nopen({count_file!r}, "a").write("run\\n")\n'
            'def get_config():\n  return base_config()\n')
  workdir = os.path.join(folder, 'w')
  before = sorted(os.listdir(folder))
  cases = [
      ([f'--config={notes}', f'--workdir={workdir}'], None),
      # As root, a non-root user (root reads mode 000); as anyone else, that user.
      ([f'--config={unreadable}', f'--workdir={workdir}'], NOBODY if os.geteuid() == 0 else None),
      (['--config=', f'--workdir={workdir}'], None),
      (['--workdir='], None),
      (['--distributed', '--num_processes=-1', f'--workdir={workdir}'], None),
      ([f'--config={broken}', f'--workdir={workdir}'], None),
      ([f'--config={counted}', '--help-config'], None),
  ]
  results = _run_train_cases(cases, folder)
  expected = [
      f'error: config file {notes} is not a Python recipe (its name does not end in .py); a '
      'recipe is a .py file whose get_config() returns an ml_collections.ConfigDict.',
      f'error: config file {unreadable} cannot be read ([Errno 13] Permission denied); make it '
      'readable for this user, or pass another recipe.',
      'error: --config is empty; pass a recipe name or file (e.g. --config default), or leave '
      '--config out for the default recipe.',
      "error: --workdir is empty; pass a folder (a new one, or a previous run's to resume it), "
      'or leave --workdir out for runs/<recipe name>.',
      'error: flag --num_processes=-1: -1 is not a positive integer',
  ]
  for (code, out, err), line in zip(results, expected):
    assert (code, out, err.strip().splitlines()) == (2, '', [line])
  code, out, err = results[5]  # the user's own code: its traceback, then one line naming it
  lines = err.strip().splitlines()
  assert code == 2 and lines[0] == 'Traceback (most recent call last):'
  assert 'SyntaxError: invalid syntax' in lines
  assert lines[-1] == (f'error: the recipe {broken}, line 1 failed (SyntaxError; its traceback '
                       'is above); fix that file, or pass another recipe.')
  code, out, err = results[6]
  assert code == 0 and 'batch_size = ' in out
  with open(count_file) as f:
    assert f.read() == 'run\n'  # the recipe ran once (ml_collections used to run it again)
  os.remove(count_file)
  assert sorted(os.listdir(folder)) == before  # no workdir, no runs/ folder


def _parse_error(capsys, parse, argv):
  with pytest.raises(SystemExit) as stop:
    parse(argv)
  assert stop.value.code == 2
  return capsys.readouterr().err.strip().splitlines()[-1]


def test_benchmark_sizes_classes_and_json_are_checked_before_it_runs(capsys, tmp_path):
  prefix = 'python -m jax_resnet.benchmark: error: '
  error = lambda *argv: _parse_error(capsys, benchmark.parse_args, ['--model', 'resnet20', *argv])
  for size in ('0', '99999999'):
    assert error('--image-size', size) == (
        f'{prefix}--image-size {size} is outside 8..4096 for resnet20 (its stem and stages '
        'downsample by 4; its native size is 32)')
  assert error('--model', 'resnet50', '--image-size', '16') == (
      f'{prefix}--image-size 16 is outside 32..4096 for resnet50 (its stem and stages downsample '
      'by 32; its native size is 224)')
  for classes in ('0', '-3'):
    assert error('--num-classes', classes) == (
        f'{prefix}--num-classes must be a positive integer, got {classes}')
  missing = tmp_path / 'missing' / 'r.json'
  assert error('--json', str(missing)) == (
      f'{prefix}--json {missing}: its folder {missing.parent} does not exist; create it first; '
      'checked before the benchmark runs')
  assert error('--json', str(tmp_path)) == (
      f'{prefix}--json {tmp_path}: is a folder, not a file name; checked before the benchmark '
      'runs')
  assert os.listdir(tmp_path) == []


def test_analysis_out_and_draws_are_checked_before_the_work(capsys, tmp_path):
  workdir = tmp_path / 'no_run_needed'  # refused before the workdir is read
  assert analysis_cli.main(['lesion', '--workdir', str(workdir), '--out', '/dev/null/x']) == 2
  assert capsys.readouterr().err.strip().splitlines() == [
      'error: --out /dev/null/x: /dev/null is not a folder, so the report folder cannot be made '
      'there']
  prog = 'python -m jax_resnet.analysis lesion: error: '
  for draws in ('0', '-1'):
    line = _parse_error(capsys, analysis_cli.main,
                        ['lesion', '--workdir', str(workdir), '--out', str(tmp_path / 'r'),
                         '--draws', draws])
    assert line == f"{prog}argument --draws: must be a positive integer, got '{draws}'"
  assert os.listdir(tmp_path) == []
