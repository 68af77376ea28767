"""Train a ResNet: `python train.py --config configs/r50.py --workdir runs/r50`.

Thin CLI over `jax_resnet.training.train_and_evaluate(config, workdir)`. Rerunning with the same
--workdir resumes from its latest checkpoint. Exit 0 on success; on bad input one clear error
line and exit 2.
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jax_resnet.config.boundary import MOVED_TO_MODEL_OPTIONS

flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config file name>).')
flags.DEFINE_string('coordinator_address', None,
                    'Multi-host: host:port of process 0 (omit on TPU pods/Slurm: auto-detected).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process index.')
flags.DEFINE_integer('heartbeat_timeout', 100,
                     'Multi-host: seconds without a heartbeat before the others stop (a dead '
                     'peer ends the run instead of hanging it).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (auto-detects '
                  'TPU pods and Slurm when no coordinator flags are given).')
FLAGS = flags.FLAGS


def _define_config_flag():
  """ml_collections parses --config.<key> overrides here; a misspelt key becomes one line."""
  default = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'default.py')
  path = _config_path_argument()
  if path and not os.path.exists(path.split(':')[0]):
    _fail(f'config file {path.split(":")[0]} does not exist; recipes live in configs/.')
  try:
    config_flags.DEFINE_config_file(
        'config', default, 'A configs/*.py recipe; override keys with --config.<key>=value.',
        lock_config=True)
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
          + '; every key is listed in jax_resnet/config/base.py.')


def _config_path_argument():
  for i, arg in enumerate(sys.argv[1:], 1):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(sys.argv):
      return sys.argv[i + 1]
  return None


def _fail(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _default_workdir():
  name = os.path.splitext(os.path.basename(FLAGS['config'].config_filename))[0]
  return os.path.join('runs', name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  import jax
  if FLAGS.config.dtype == 'float64':
    jax.config.update('jax_enable_x64', True)  # 64-bit arrays exist only with it on
  if FLAGS.distributed or FLAGS.coordinator_address:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                               heartbeat_timeout_seconds=FLAGS.heartbeat_timeout)
  from jax_resnet.errors import UserError
  from jax_resnet.training import train_and_evaluate
  logging.set_verbosity(logging.WARNING)
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir or _default_workdir())
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


if __name__ == '__main__':
  _define_config_flag()
  app.run(main)
