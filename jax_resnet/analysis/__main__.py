"""`jax-resnet analysis <command> [options] --out DIR` (or `python -m jax_resnet.analysis`).

Commands: gradflow, jacobian, lesion, paths, degradation, ode (see docs/analysis.md). Each writes
DIR/report.md (tables, the exact command, versions, date), DIR/results.json and PNG plots.

examples:
  jax-resnet analysis gradflow --out reports/gradflow
  jax-resnet analysis lesion --workdir runs/default --out reports/lesion
  jax-resnet analysis gradflow --help      # one tool's options
"""

import argparse
import importlib
import os
import sys
import time

COMMANDS = {
    'gradflow': 'gradient norms per block input and per layer, several models side by side',
    'jacobian': 'd x_L/d x_l == prod(I + J_i), spectral norms, the bound prod(1 + ||J_i||)',
    'lesion': 'Veit et al. 2016: delete blocks of a trained net at test time',
    'paths': 'Veit et al. 2016: path-length distribution and gradient per path length',
    'degradation': 'train plain and residual nets of several depths with one recipe',
    'ode': 'residual_scale h = 1/L: outputs converge as depth grows (Euler view)',
}


def parser(prog='python -m jax_resnet.analysis'):
  top = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = top.add_subparsers(dest='command', required=True)
  for name, help_text in COMMANDS.items():
    command = sub.add_parser(name, help=help_text, description=help_text)
    command.add_argument('--out', required=True, help='directory for report.md and plots')
    command.add_argument('--float64', action='store_true',
                         help='compute in float64 (turns on jax_enable_x64): results near '
                              'round-off instead of float32 summation order')
    importlib.import_module(f'jax_resnet.analysis.{name}').add_arguments(command)
  return top


def output_folder_problem(out: str):
  """Why the report folder `out` cannot be made or written (nothing is created), or None."""
  if not out.strip():
    return 'is empty; pass the folder for report.md and its plots'
  existing = os.path.abspath(out)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f'{existing} is not a folder, so the report folder cannot be made there'
  if not os.access(existing, os.W_OK | os.X_OK):
    return f'{existing} is not writable; pass a folder you can write'
  return None


def main(argv=None, prog='python -m jax_resnet.analysis'):
  from jax_resnet.analysis import report
  report.COMMAND_STARTED = time.time()
  argv = sys.argv[1:] if argv is None else argv
  args = parser(prog).parse_args(argv)
  problem = output_folder_problem(args.out)
  if problem:  # before the work: a report that cannot be written would be lost at the end
    print(f'error: --out {args.out}: {problem}', file=sys.stderr)
    return 2
  if args.float64:
    import jax
    jax.config.update('jax_enable_x64', True)
  module = importlib.import_module(f'jax_resnet.analysis.{args.command}')
  from jax_resnet.errors import UserError
  try:
    path, _ = module.main(args, argv)
  except UserError as error:  # an internal bug keeps its traceback
    print(f'error: {error}', file=sys.stderr)
    return 2
  print(f'{args.command}: wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
