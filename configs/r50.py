"""ResNet-50 on ImageNet (and r18/r34/r101/r152/r200 by argument), the standard large-batch
recipe (Goyal et al. 2017 with the now-common cosine schedule and label smoothing).

Command:   python -m jax_resnet.data prepare imagenet2012 --manual_dir DIR  (the two tars)
           python train.py --config configs/r50.py --workdir runs/r50
           python train.py --config configs/r50.py:resnet101 --workdir runs/r101
Data:      ImageNet-2012 as a TFDS ArrayRecord dataset; JPEGs decoded in grain workers.
Expected:  top-1 about 0.77 after 90 epochs for resnet50 (torchvision's V1 recipe reaches
           0.7613 without label smoothing/cosine); not yet measured by us.
           Global batch 1024, lr 0.1 x batch/256, 5-epoch linear warmup then cosine, Nesterov
           momentum 0.9, weight decay 1e-4, label smoothing 0.1, bfloat16 compute,
           Inception crop 224 + flip; eval: resize 256, centre crop 224.
"""

from jax_resnet.config import base_config


def get_config(model: str = 'resnet50'):
  c = base_config()
  c.model = model
  c.dataset = 'imagenet2012'
  c.num_classes = 1000
  c.image_size = 224
  c.train_split = 'train'
  c.eval_split = 'validation'
  c.augment = 'inception'
  c.normalize = 'mean_std'
  c.num_workers = 8
  c.batch_size = 1024
  c.eval_batch_size = 1024
  c.num_epochs = 90.0
  c.optimizer = 'sgd'
  c.nesterov = True
  c.momentum = 0.9
  c.learning_rate = 0.1
  c.lr_batch_base = 256
  c.lr_schedule = 'cosine'
  c.warmup_epochs = 5.0
  c.weight_decay = 1e-4
  c.label_smoothing = 0.1
  c.dtype = 'bfloat16'
  c.log_every_steps = 100
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 2_500
  return c
