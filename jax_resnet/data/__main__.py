"""Prepare a TFDS dataset for training: `jax-resnet data prepare NAME [--data_dir DIR]` (or
`python -m jax_resnet.data prepare ...`).

Downloads (or, for imagenet2012, reads the manually downloaded tars) and writes the ArrayRecord
files that `tfds.data_source` reads at training time. Needs TensorFlow only here:
`pip install "jax-resnet-family[prepare]"` (in a checkout: `pip install -e ".[prepare]"`).

examples:
  jax-resnet data prepare cifar10
  jax-resnet data prepare imagenet2012 --data_dir /data/tfds --manual_dir /data/imagenet_tars
"""

import argparse
import importlib.util
import os
import sys

from jax_resnet.data import tfds_source
from jax_resnet.errors import UserError


def _parser(prog):
  parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  prep = sub.add_parser('prepare', help='download and prepare a TFDS dataset (array_record)')
  prep.add_argument('name', help="TFDS dataset name, e.g. cifar10, cifar100, imagenet2012")
  prep.add_argument('--data_dir', default='', help='TFDS data directory (default: TFDS default)')
  prep.add_argument('--manual_dir', default='',
                    help='directory with manually downloaded files (default: '
                         '<data_dir>/downloads/manual); imagenet2012 needs '
                         + ' and '.join(tfds_source.IMAGENET_MANUAL_FILES))
  return parser


def _require_tensorflow():
  if importlib.util.find_spec('tensorflow') is None:
    raise UserError(
        'preparing a TFDS dataset needs TensorFlow (TFDS uses it to generate the files; '
        'training does not), and it is not installed; run: '
        'pip install "jax-resnet-family[prepare]" (in a checkout: pip install -e ".[prepare]")')


def _require_manual_files(name, manual_dir):
  if not name.startswith('imagenet2012'):
    return
  missing = [f for f in tfds_source.IMAGENET_MANUAL_FILES
             if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise UserError(
        f'{name} cannot be downloaded automatically: put {" and ".join(missing)} (from '
        f'image-net.org, login required) in {manual_dir} (or pass --manual_dir), then rerun')


def prepare(name, data_dir='', manual_dir=''):
  """builder.download_and_prepare(file_format='array_record') for TFDS dataset `name`."""
  _require_tensorflow()
  tfds = tfds_source.import_tfds()
  builder = tfds_source.builder(name, data_dir)
  manual_dir = manual_dir or tfds_source.manual_dir(data_dir)
  _require_manual_files(name, manual_dir)
  builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder.data_dir


def main(argv=None, prog='python -m jax_resnet.data'):
  args = _parser(prog).parse_args(argv)
  try:
    path = prepare(args.name, args.data_dir, args.manual_dir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except Exception as e:
    # Download/generation failures (network, disk, corrupt tars): one line, not a trace.
    first = str(e).splitlines()[0] if str(e) else ''
    print(f'error: preparing {args.name} failed: {type(e).__name__}: {first}; check network '
          f'access and free space in the data_dir, then rerun the same command', file=sys.stderr)
    return 1
  print(f'prepared {args.name} at {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
