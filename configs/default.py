"""The embedded default: a CIFAR-style ResNet-20 on scikit-learn's handwritten digits.

Command:   pip install -e . && python train.py
Data:      none to download: the 1,797 8x8 digits that ship inside scikit-learn, upsampled to
           16x16, split 1,437 train / 360 test with a fixed seed.
Expected:  test top-1 >= 0.97 in under 3 minutes on a 2-core CPU, compilation included
           (measured: see docs/training.md).

Every key is defined, with a one-line comment, in jax_resnet/config/base.py; a recipe starts
from `base_config()` and sets what its experiment needs.
"""

from jax_resnet.config import base_config


def get_config():
  c = base_config()
  c.model = 'resnet20'
  c.num_classes = 10
  c.dataset = 'digits'
  c.image_size = 16
  c.train_split = 'train'
  c.eval_split = 'test'
  c.augment = 'none'
  c.normalize = 'per_pixel_mean'
  c.batch_size = 128
  c.eval_batch_size = 512
  c.num_epochs = 30.0
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.nesterov = False
  c.learning_rate = 0.1
  c.lr_schedule = 'cosine'
  c.warmup_epochs = 1.0
  c.weight_decay = 1e-4
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
