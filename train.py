"""Train a ResNet: `python train.py --config configs/r50.py --workdir runs/r50`.

Thin CLI over `jax_resnet.training.train_and_evaluate(config, workdir)`. Rerunning with the same
--workdir resumes from its latest checkpoint. Exit 0 on success; on bad input one clear error
line and exit 2.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config file name>).')
flags.DEFINE_string('coordinator_address', None,
                    'Multi-host: host:port of process 0 (omit on TPU pods/Slurm: auto-detected).')
flags.DEFINE_integer('num_processes', None, 'Multi-host: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-host: this process index.')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (auto-detects '
                  'TPU pods and Slurm when no coordinator flags are given).')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'default.py'),
    'A configs/*.py recipe; override keys with --config.<key>=value.', lock_config=True)
FLAGS = flags.FLAGS


def _default_workdir():
  name = os.path.splitext(os.path.basename(FLAGS['config'].config_filename))[0]
  return os.path.join('runs', name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  import jax
  if FLAGS.distributed or FLAGS.coordinator_address:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  from jax_resnet.errors import UserError
  from jax_resnet.training import train_and_evaluate
  logging.set_verbosity(logging.WARNING)
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir or _default_workdir())
  except UserError as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
