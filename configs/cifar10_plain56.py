"""Plain-56 (no shortcuts) on CIFAR-10 with the paper's recipe (He et al. 2015 §4.2).

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10_plain56.py --workdir runs/cifar10_plain56
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset (the prepare command, once).
Expected:  the paper's Figure 6 (left): plain-56 has higher training and test error than
           plain-20 (the degradation problem).
           Time: 64k steps of batch 128; on one modern GPU tens of minutes (not measured here).
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('cifar10.py:plain56', relative_to=__file__)
  return c
