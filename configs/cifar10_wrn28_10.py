"""Wide ResNet-28-10 with dropout 0.3 on CIFAR-10 (Zagoruyko & Komodakis 2016).

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10_wrn28_10.py
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset.
Expected:  test error 3.89% in the paper (Table 4, with dropout), top-1 about 0.96.
           200 epochs, batch 128, Nesterov SGD 0.9, weight decay 5e-4, lr 0.1 x0.2 at epochs
           60/120/160. The paper normalises per channel; per-pixel mean is used here.
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('cifar10.py:wrn28_10', relative_to=__file__)
  c.model_options.dropout_rate = 0.3
  c.num_train_steps = -1
  c.num_epochs = 200.0
  c.nesterov = True
  c.weight_decay = 5e-4
  c.lr_boundaries = (0.3, 0.6, 0.8)   # epochs 60, 120, 160 of 200
  c.lr_decay_factor = 0.2
  return c
