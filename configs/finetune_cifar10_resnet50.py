"""Fine-tune an ImageNet ResNet-50 (torchvision or timm weights) on CIFAR-10.

Command:   python -m jax_resnet.data prepare cifar10
           python train.py --config configs/finetune_cifar10_resnet50.py \
               --config.init_from=resnet50.safetensors --workdir runs/ft_r50
           (weights: torchvision's resnet50 .pth, or timm/resnet50.tv_in1k's model.safetensors;
           see docs/weights.md)
Data:      CIFAR-10 (TFDS ArrayRecord), upsampled to 160x160 by the Inception-style crop.
Expected:  a pretrained ResNet-50 fine-tuned this way usually reaches 0.96-0.98 top-1 on
           CIFAR-10 (literature value, not measured here). Only the head starts fresh
           (init_reinit_head); set freeze_batch_norm=True to keep ImageNet BN statistics.
"""

from jax_resnet.config import base_config


def get_config():
  c = base_config()
  c.model = 'resnet50'
  c.num_classes = 10
  c.init_from = ''                 # required: pass --config.init_from=FILE
  c.init_reinit_head = True
  c.init_tag = 'resnet50.tv2_in1k'  # the file's tag: its normalisation (set to the one you use)
  c.model_options.freeze_batch_norm = False
  c.dataset = 'cifar10'
  c.image_size = 160
  c.train_split = 'train'
  c.eval_split = 'test'
  c.augment = 'inception'
  c.normalize = 'mean_std'
  c.batch_size = 128
  c.eval_batch_size = 512
  c.num_epochs = 10.0
  c.optimizer = 'sgd'
  c.nesterov = True
  c.learning_rate = 0.01
  c.lr_schedule = 'cosine'
  c.warmup_epochs = 0.5
  c.weight_decay = 1e-4
  c.dtype = 'bfloat16'
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1_000
  return c
