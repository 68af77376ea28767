"""ResNet-110 on CIFAR-10 with the paper's recipe (He et al. 2015 §4.2; lr 0.01 until
training error < 80%, about 400 iterations, then 0.1).

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10_resnet110.py --workdir runs/cifar10_resnet110
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset (the prepare command, once).
Expected:  test error 6.43% in the paper (best of 5; mean 6.61%), top-1 about 0.93.
           Time: 64k steps of batch 128; on one modern GPU tens of minutes (not measured here).
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('cifar10.py:resnet110', relative_to=__file__)
  c.warmup_lr = 0.01          # He et al. 2015: warm up until training error < 80%
  c.warmup_until_error = 0.8
  return c
