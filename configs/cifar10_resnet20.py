"""ResNet-20 on CIFAR-10 with the paper's recipe (He et al. 2015 §4.2).

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10_resnet20.py --workdir runs/cifar10_resnet20
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset (the prepare command, once).
Expected:  test error 8.75% in the paper (Table 6), i.e. top-1 about 0.91.
           Time: 64k steps of batch 128; on one modern GPU tens of minutes (not measured here).
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('cifar10.py:resnet20', relative_to=__file__)
  return c
