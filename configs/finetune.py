"""Fine-tune published weights on a folder of your own images (one sub-folder per class).

Command:   jax-resnet train --config finetune --config.dataset=folder:./photos \
               --config.init_from=resnet50.tv2_in1k --workdir runs/photos
           (any tag of jax_resnet.weights.list_tags(), hf-hub:<owner>/<repo>, a weights file
           or another run's workdir; the model is the one init_from holds)
           On a CPU, a small folder at a small size: add --config.image_size=112.
Data:      the folder, its classes named by the sub-folders; a held-out split when it has no
           train/ and val/ (docs/finetuning.md).
Expected:  depends on your images; docs/finetuning.md reports a measured run.

Defaults, and where each comes from:
- the whole network trains (trainable='all'): Kornblith, Shlens & Le 2019 ("Do Better
  ImageNet Models Transfer Better?") found fine-tuning every layer better than training a
  head on fixed features on each of their 12 datasets; trainable='head' is the cheap variant.
- SGD with momentum 0.9, as torchvision's transfer-learning tutorial and BiT's HyperRule
  (Kolesnikov et al. 2020) fine-tune; a peak rate of 0.01 per 64 images (scaled with the
  batch, Goyal et al. 2017), a tenth of the ImageNet-from-scratch rate (0.1 per 256 is 0.025
  per 64) because the weights start near a good solution; a cosine decay (Loshchilov & Hutter
  2017) after half an epoch of warmup.
- 15 epochs: small folders converge in a few (torchvision's tutorial trains 25 on 244
  images with a step decay every 7).
- label smoothing 0.1 (Szegedy et al. 2016), as torchvision's and timm's ImageNet recipes.
- image_size 224: the crop the ImageNet weights were trained and evaluated at; the
  RandomResizedCrop + flip augmentation ('inception') of torchvision's reference recipe;
  inputs normalised with the weights' own mean and std (init_tag defaults to init_from).
- weight decay 1e-4 on kernels only (decay_bn_and_bias=False), the ImageNet value.
"""

from jax_resnet.config import base_config


def get_config():
  c = base_config()
  c.model = ''                       # the model init_from holds
  c.init_from = 'resnet50.tv2_in1k'  # torchvision's IMAGENET1K_V2 weights (80.858 top-1)
  c.init_reinit_head = True          # a fresh head for the folder's classes
  c.trainable = 'all'
  c.dataset = 'folder:photos'        # set --config.dataset=folder:<your folder>
  c.image_size = 224
  c.augment = 'inception'
  c.normalize = 'mean_std'
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 15.0
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.nesterov = False
  c.learning_rate = 0.01
  c.lr_batch_base = 64
  c.lr_schedule = 'cosine'
  c.warmup_epochs = 0.5
  c.weight_decay = 1e-4
  c.decay_bn_and_bias = False
  c.label_smoothing = 0.1
  c.sync_batch_norm = False
  c.log_every_steps = 10
  c.checkpoint_every_steps = 500
  return c
