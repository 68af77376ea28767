"""The CIFAR-10 recipe of He et al. 2015 §4.2 for any model: the cifar10_* recipes start here.

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/cifar10.py:resnet32 --workdir runs/cifar10_resnet32
Data:      CIFAR-10 prepared as a TFDS ArrayRecord dataset (the prepare command, once).
Expected:  see the paper's Table 6 for its models (e.g. resnet20 8.75% test error).
           Batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
           iterations, stop at 64k; 4-pixel pad + 32x32 crop + flip; per-pixel mean subtraction.
"""

from jax_resnet.config import base_config


def get_config(model: str = 'resnet20'):
  c = base_config()
  c.model = model
  c.num_classes = 10
  c.dataset = 'cifar10'
  c.image_size = 32
  c.train_split = 'train'
  c.eval_split = 'test'
  c.holdout_size = 0                 # 5000: the paper's 45k/5k train/val split
  c.augment = 'pad_crop_flip'
  c.crop_padding = 4
  c.normalize = 'per_pixel_mean'
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_train_steps = 64_000
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.nesterov = False
  c.learning_rate = 0.1
  c.lr_schedule = 'step'
  c.lr_boundaries = (32_000, 48_000)
  c.lr_decay_factor = 0.1
  c.warmup_epochs = 0.0
  c.weight_decay = 1e-4
  c.weight_decay_mode = 'l2'
  c.log_every_steps = 100
  c.eval_every_steps = 2_000
  c.checkpoint_every_steps = 2_000
  return c
