"""`jax-resnet <command> [options]` (or `python -m jax_resnet <command>`): the installed program.

Each command is a module with a `main(argv)`, imported only when it runs, so `jax-resnet --help`
and a command's `--help` answer without building a model.
"""

import importlib
import importlib.util
import inspect
import sys

PROG = 'jax-resnet'

# name: (the module whose main(argv) runs it, what it does)
COMMANDS = {
    'train': ('jax_resnet.train_cli', 'train a ResNet from a recipe (a shipped name or a file)'),
    'predict': ('jax_resnet.predict', 'classify images with pretrained or trained weights'),
    'benchmark': ('jax_resnet.benchmark', 'time the train or eval step: images/s, compile, MFU'),
    'analysis': ('jax_resnet.analysis.__main__',
                 'research tools: gradflow, jacobian, lesion, paths, degradation, ode'),
    'data': ('jax_resnet.data.__main__', 'prepare a TFDS dataset for training'),
    'export': ('jax_resnet.export', 'write a model as a serialized jax.export program or ONNX'),
    'push': ('jax_resnet.push', 'upload a trained model to the Hugging Face Hub'),
}

EXAMPLES = """examples:
  jax-resnet train                                  # the default recipe: embedded digits, CPU
  jax-resnet train --config cifar10:resnet32 --workdir runs/resnet32
  jax-resnet predict --tag resnet50.tv2_in1k cat.jpg
  jax-resnet benchmark --model resnet20 --batch-size 128
  jax-resnet analysis gradflow --out reports/gradflow
  jax-resnet data prepare cifar10
"""


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [f'usage: {PROG} <command> [options]   ({PROG} <command> --help for its options)', '',
           'Deep residual networks in JAX: train, predict, benchmark and analyse.', '',
           'commands:']
  lines += [f'  {name:{width}}  {summary}' for name, (_, summary) in COMMANDS.items()]
  return '\n'.join(lines) + '\n\n' + EXAMPLES


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ('-h', '--help'):
    print(usage(), file=sys.stdout if argv else sys.stderr)
    return 0 if argv else 2
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f'{PROG}: error: unknown command {name!r}; the commands are '
          f'{", ".join(COMMANDS)} ({PROG} --help).', file=sys.stderr)
    return 2
  module_name = COMMANDS[name][0]
  if importlib.util.find_spec(module_name) is None:
    print(f'{PROG}: error: the {name} command is not part of this jax_resnet version (no module '
          f'{module_name}); upgrade jax_resnet to use it.', file=sys.stderr)
    return 2
  run = importlib.import_module(module_name).main
  prog = f'{PROG} {name}'
  if name == 'train':  # absl's argv: the program's name first
    return run([prog, *rest], prog=prog)
  result = run(rest, prog=prog) if 'prog' in inspect.signature(run).parameters else run(rest)
  return result if isinstance(result, int) else 0


if __name__ == '__main__':
  sys.exit(main())
