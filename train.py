"""Train a ResNet: `python train.py --config configs/r50.py --workdir runs/r50`.

The checkout's entry point of the installed `jax-resnet train` (jax_resnet/train_cli.py, which
documents the flags): rerunning with the same --workdir resumes from its latest checkpoint.
`python train.py --help` lists the options, `--help-config` every config key.
"""

import sys

from jax_resnet import train_cli

if __name__ == '__main__':
  sys.exit(train_cli.main(prog='python train.py'))
