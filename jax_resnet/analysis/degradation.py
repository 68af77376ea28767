"""degradation: He et al. 2015, Figures 1 and 6: with one recipe, a deeper plain net has higher
training error than a shallower one, while the residual twins improve with depth.

Each model is trained by the trainer itself (`train_and_evaluate`) into RUNS/<model>, and the
curves are read back from each workdir's metrics.jsonl: the training error is the trainer's
running mean over each log interval (BatchNorm in train mode, the recipe's augmentation), the
test error is 1 - eval top-1 on the whole eval split. A workdir that already holds a finished run
of the same length is reused.
"""

import ast
import json
import os

import numpy as np

from jax_resnet.analysis import common, report
from jax_resnet.config import load_config

DEFAULT_MODELS = ('plain20', 'resnet20', 'plain56', 'resnet56')
# The digits default halves configs/default.py's 30 epochs so that the four runs stay short on a
# CPU (docs/analysis.md has the time); pass --set num_epochs=30 for the full default recipe.
DIGITS_DEFAULTS = {'num_epochs': '15'}


def recipe(model: str, dataset: str = 'digits', overrides=None):
  """The config for `model`: configs/default.py for the embedded digits, or the paper's CIFAR-10
  recipe (configs/cifar10_<model>.py when it exists, else configs/cifar10.py)."""
  if dataset == 'digits':
    config = load_config('default')
  elif dataset == 'cifar10':
    try:
      config = load_config(f'cifar10_{model}')
    except FileNotFoundError:
      config = load_config(f'cifar10.py:{model}')
  else:
    raise common.AnalysisError(f"degradation runs on 'digits' or 'cifar10', got {dataset!r}.")
  config.model = model
  config.progress_bar = False
  for key, value in (overrides or {}).items():
    section, _, leaf = key.rpartition('.')
    target = config[section] if section in config else config
    if leaf not in target or (section and section not in config):
      raise common.AnalysisError(f'unknown config key {key!r} in --set; see '
                                 'jax_resnet/config/base.py.')
    target[leaf] = _convert(target[leaf], value)
  return config


def _convert(current, value):
  """A --set string as the type the config key already has."""
  if not isinstance(value, str):
    return value
  if current is None:  # an unset model option: the value as a Python literal
    if value.lower() in ('true', 'false'):
      return value.lower() == 'true'
    try:
      return ast.literal_eval(value)
    except (ValueError, SyntaxError):
      return value
  if isinstance(current, bool):
    return value.lower() in ('1', 'true', 'yes')
  if isinstance(current, (int, float)):
    return type(current)(float(value)) if isinstance(current, int) else float(value)
  if isinstance(current, tuple):
    return tuple(ast.literal_eval(value))
  return value


def read_curves(workdir: str) -> dict:
  """Training and test error against iterations from workdir/metrics.jsonl (the last record of
  each step wins, so a resumed run is not counted twice)."""
  train, test = {}, {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['split'] == 'train':
        train[record['step']] = record['error']
      elif record['split'] == 'eval':
        test[record['step']] = 1.0 - record['top1']
  steps = lambda d: sorted(d)
  return {'train_steps': steps(train), 'train_error': [train[s] for s in steps(train)],
          'test_steps': steps(test), 'test_error': [test[s] for s in steps(test)]}


def _finished(workdir, config):
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  wanted = config.num_train_steps
  return summary if wanted < 0 or summary.get('steps') == wanted else None


def train_degradation(models, runs_dir: str, dataset: str = 'digits', overrides=None) -> list:
  """Trains (or reuses) each model in runs_dir/<model>; returns curves and final numbers."""
  from jax_resnet.config import train_and_evaluate
  results = []
  for model in models:
    config = recipe(model, dataset, overrides)
    workdir = os.path.join(runs_dir, model)
    summary = _finished(workdir, config)
    reused = summary is not None
    if not reused:
      summary = train_and_evaluate(config, workdir)
    curves = read_curves(workdir)
    results.append({
        'model': model, 'residual': not model.startswith('plain'), 'depth': _depth(model),
        'workdir': workdir, 'reused': reused, 'steps': int(summary['steps']),
        'wall_seconds': float(summary['wall_seconds']),
        'final_train_error': curves['train_error'][-1],
        'final_test_error': 1.0 - float(summary['final_eval_top1']), **curves})
  return results


def _depth(model: str) -> int:
  digits = ''.join(ch for ch in model.split('_')[-1] if ch.isdigit())
  return int(digits) if digits else 0


def _plot(plt, results):
  fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
  for ax, residual in zip(axes, (False, True)):
    chosen = [r for r in results if r['residual'] == residual]
    for r in chosen:
      line, = ax.plot(r['test_steps'], 100 * np.asarray(r['test_error']), lw=2,
                      label=f'{r["model"]} test')
      ax.plot(r['train_steps'], 100 * np.asarray(r['train_error']), '--', lw=1,
              color=line.get_color(), label=f'{r["model"]} train')
    ax.set_title('residual' if residual else 'plain')
    ax.set_xlabel('iterations')
    ax.grid(alpha=0.3)
    if chosen:
      ax.legend(fontsize=8)
  axes[0].set_ylabel('error (%)')
  return fig


def write_report(results, out, argv=None, dataset='digits', overrides=None):
  plt = report.pyplot()
  rep = report.Report(out, 'degradation: plain vs residual nets of several depths', argv)
  rep.text(__doc__.split('\n\n', 1)[1])
  rep.text(f'Dataset: {dataset}; recipe overrides: {overrides or "none"}.')
  rep.table(['model', 'depth', 'residual', 'steps', 'final train error', 'final test error',
             'train wall s', 'reused'],
            [[r['model'], r['depth'], r['residual'], r['steps'], r['final_train_error'],
              r['final_test_error'], r['wall_seconds'], r['reused']] for r in results],
            'Final numbers (train error: mean over the last log interval)')
  rep.figure(_plot(plt, results), 'degradation.png',
             'Training (dashed) and test (bold) error against iterations (He et al. Fig. 6)')
  return rep.write({'dataset': dataset, 'overrides': overrides or {}, 'models': results})


def _parse_sets(items):
  overrides = {}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep:
      raise common.AnalysisError(f'--set takes key=value, got {item!r}.')
    overrides[key] = value
  return overrides


def add_arguments(parser):
  parser.add_argument('--models', default=','.join(DEFAULT_MODELS),
                      help='comma-separated registered model names')
  parser.add_argument('--dataset', default='digits', choices=('digits', 'cifar10'),
                      help="'digits' (embedded, CPU) or 'cifar10' (paper recipe, a GPU)")
  parser.add_argument('--runs', default='', help='where the workdirs go (default OUT/runs)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='override a config key for every model (e.g. num_train_steps=100)')


def main(args, argv=None):
  overrides = {**(DIGITS_DEFAULTS if args.dataset == 'digits' else {}), **_parse_sets(args.set)}
  if args.float64:
    overrides['dtype'] = 'float64'
  runs = args.runs or os.path.join(args.out, 'runs')
  models = common.split_specs(args.models)
  results = train_degradation(models, runs, args.dataset, overrides)
  return write_report(results, args.out, argv, args.dataset, overrides), results
