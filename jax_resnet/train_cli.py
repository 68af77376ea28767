"""`jax-resnet train` (and a checkout's `python train.py`): train a ResNet from a recipe.

Thin CLI over `jax_resnet.config.train_and_evaluate(config, workdir)`. Rerunning with the same
--workdir resumes from its latest checkpoint. Exit 0 on success; on bad input one clear error
line and exit 2.
"""

import os
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from jax_resnet.config import base, recipes
from jax_resnet.config.boundary import MOVED_TO_MODEL_OPTIONS
from jax_resnet.errors import UserError

flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<recipe name>).')
flags.DEFINE_bool('help_config', False, 'Print every config key with its value (the recipe and '
                  'the --config.<key> overrides applied) and what it does, then exit.')
flags.DEFINE_string('coordinator_address', None,
                    'Multi-host: host:port of process 0 (omit on TPU pods/Slurm: auto-detected).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.', lower_bound=1)
flags.DEFINE_integer('process_id', None, 'Multi-host: this process index.', lower_bound=0)
flags.DEFINE_integer('heartbeat_timeout', 100,
                     'Multi-host: seconds without a heartbeat before the others stop (a dead '
                     'peer ends the run instead of hanging it).', lower_bound=1)
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (auto-detects '
                  'TPU pods and Slurm when no coordinator flags are given).')
FLAGS = flags.FLAGS

SUMMARY = 'train a ResNet from a recipe; rerun with the same --workdir to resume'
EXAMPLES = """examples:
  {prog}                                    # the default recipe: embedded digits, CPU, minutes
  {prog} --config r50 --workdir runs/r50 --config.batch_size=512
  {prog} --config cifar10:resnet32          # a shipped recipe with get_config's argument
  {prog} --config my_recipe.py              # a recipe file of your own
  {prog} --config r50 --help-config         # every config key: its value and what it does
"""


def _usage(prog: str) -> str:
  lines = [f'usage: {prog} [--config RECIPE[:ARG]] [--config.<key>=VALUE ...] [--workdir DIR]',
           '', SUMMARY + '.', '',
           'options:',
           '  --config RECIPE[:ARG]  a shipped recipe by name (default: default) or a recipe '
           'file;', f'                         shipped: {", ".join(recipes.list_recipes())}',
           '  --config.<key>=VALUE   override one config key (list them: --help-config)']
  for flag in FLAGS.get_flags_for_module(__name__):
    default = '' if flag.default in (None, False) else f' (default: {flag.default})'
    name = 'help-config' if flag.name == 'help_config' else flag.name
    lines.append(f'  --{name}: {flag.help}{default}')
  return '\n'.join(lines) + '\n\n' + EXAMPLES.format(prog=prog)


def _fail(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _config_argument(argv):
  """(indices in argv that give --config, its value), or ([], None)."""
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith('--config='):
      return [i], arg.split('=', 1)[1]
    if arg == '--config':
      return [i, i + 1], argv[i + 1] if i + 1 < len(argv) else None
  return [], None


def _load_recipe(argv):
  """(the recipe's ConfigDict, its file, argv without --config): the recipe is executed here,
  once (a bare name is a shipped recipe), and checked to define get_config() returning a
  ConfigDict: ml_collections would fail with a traceback. An error in the recipe's own code
  keeps its traceback, followed by one line naming the file."""
  indices, value = _config_argument(argv)
  if indices and not (value or '').strip():
    _fail('--config is empty; pass a recipe name or file (e.g. --config default), or leave '
          '--config out for the default recipe.')
  name, colon, argument = (value or 'default').partition(':')
  try:
    path = recipes.recipe_path(name)
    config = recipes.load_config(path + colon + argument)
  except FileNotFoundError:
    _fail(f'config {name!r} is neither a recipe file nor a shipped recipe; pass a path to a '
          f'recipe file or one of: {", ".join(recipes.list_recipes())}.')
  except UserError as error:  # not a .py, unreadable, no get_config() (ConfigError)
    _fail(str(error))
  except Exception as error:  # noqa: BLE001 (the recipe's own code: any exception it raises)
    traceback.print_exc()
    where = f', line {error.lineno}' if isinstance(error, SyntaxError) else ''
    _fail(f'the recipe {path}{where} failed ({type(error).__name__}; its traceback is above); '
          'fix that file, or pass another recipe.')
  return config, path, [arg for i, arg in enumerate(argv) if i not in indices]


def _parse_flags(argv, config):
  """Defines --config holding the recipe's `config` (ml_collections parses the
  --config.<key> overrides) and parses argv; a misspelt key or a bad flag value becomes one
  line. Returns the arguments left over."""
  try:  # the overrides are applied as the flag is defined (its default is `config`)
    config_flags.DEFINE_config_dict(
        'config', config, 'A recipe; override keys with --config.<key>=value.',
        lock_config=True)
    return FLAGS(argv)
  except (AttributeError, KeyError) as error:
    text = str(error).replace("\\'", "'")
    key = re.search(r"'([^'\\]+)", text)
    key = key.group(1) if key else text
    hint = re.search(r'Did you mean "([^"]+)"', text)
    if key.split('.')[-1] in MOVED_TO_MODEL_OPTIONS:
      hint = f'model_options.{key.split(".")[-1]}'
    else:
      hint = hint.group(1) if hint else None
    _fail(f'unknown config key {key!r}' + (f' (did you mean {hint!r}?)' if hint else '')
          + '; --help-config lists every key.')
  except flags.Error as error:
    _fail(str(error).splitlines()[0])


_RECIPE = {'path': None}  # the recipe file of this run (its name names the default workdir)


def _default_workdir():
  name = os.path.splitext(os.path.basename(_RECIPE['path']))[0]
  return os.path.join('runs', name)


def config_listing(config, prefix='') -> str:
  """Every key of `config`, one a line: `key = value  # what it does` (base_config's
  comments)."""
  comments, lines = base.key_comments(), []
  for key, value in config.items():
    if hasattr(value, 'items'):
      lines.append(config_listing(value, prefix + key + '.'))
      continue
    comment = comments.get(prefix + key)
    lines.append(f'{prefix}{key} = {value!r}' + (f'  # {comment}' if comment else ''))
  return '\n'.join(lines)


def _train(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.help_config:
    print(config_listing(FLAGS.config))
    return 0
  if FLAGS.workdir is not None and not FLAGS.workdir.strip():
    _fail('--workdir is empty; pass a folder (a new one, or a previous run\'s to resume it), '
          'or leave --workdir out for runs/<recipe name>.')
  import jax
  if FLAGS.config.dtype == 'float64':
    jax.config.update('jax_enable_x64', True)  # 64-bit arrays exist only with it on
  if FLAGS.distributed or FLAGS.coordinator_address:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                               heartbeat_timeout_seconds=FLAGS.heartbeat_timeout)
  from jax_resnet.config import train_and_evaluate
  logging.set_verbosity(logging.WARNING)
  workdir = FLAGS.workdir or _default_workdir()
  from jax_resnet.training.checkpoints import CheckpointWriteError
  try:
    train_and_evaluate(FLAGS.config, workdir)
  except CheckpointWriteError as error:
    # The run has stopped and its files are closed; Orbax's writer threads would print their
    # own copy of the storage error while the interpreter shuts down, so leave without it.
    print(f'error: {error}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)
  except UserError as error:
    _fail(str(error))
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    # A peer died mid-collective: say so in one line and leave before JAX's shutdown barrier,
    # which would otherwise abort with pages of C++ logs.
    reason = (str(error).splitlines() or [''])[0][:300]
    print(f'error: a collective with the other {jax.process_count() - 1} process(es) failed '
          f'({reason}); another process has probably stopped. Rerun every process with the '
          'same command to resume from the last checkpoint.', file=sys.stderr, flush=True)
    os._exit(3)
  if jax.process_index() == 0:
    from jax_resnet.training.curves import plot_curves
    try:
      curves = plot_curves(workdir)
    except OSError as error:  # the run is done and saved; only the picture is missing
      print(f'warning: could not write the training curves in {workdir} ([Errno {error.errno}] '
            f'{error.strerror}); the run itself is complete.', file=sys.stderr)
      curves = None
    if curves:
      print(f'training curves: {curves}')
  return 0


def main(argv=None, prog='jax-resnet train'):
  """argv: the program name, then its arguments (sys.argv by default)."""
  argv = list(sys.argv if argv is None else argv)
  if any(arg in ('-h', '--help', '-?', '--helpshort') for arg in argv[1:]):
    print(_usage(prog))
    return 0
  argv = [arg.replace('--help-config', '--help_config') for arg in argv]
  config, _RECIPE['path'], argv = _load_recipe(argv)
  sys.argv = argv  # ml_collections reads the --config.<key> overrides from sys.argv
  remaining = _parse_flags(argv, config)
  app.run(_train, argv=argv, flags_parser=lambda _: remaining)
