"""Pre-activation ResNet-164 (bottleneck) on CIFAR-10 (He et al. 2016, "Identity Mappings").

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10_preact_resnet164.py
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset.
Expected:  test error 5.46% in the paper (Table 2), top-1 about 0.945. Same schedule as the
           2015 recipe (64k iterations, lr 0.1 with the 0.01 warmup the paper uses for its
           deepest nets).
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('cifar10.py:preact_resnet164', relative_to=__file__)
  c.warmup_lr = 0.01
  c.warmup_until_error = 0.8
  return c
