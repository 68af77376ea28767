"""What the input pipelines need to know, as plain values (the trainer builds it from its
config in jax_resnet.config.boundary, whose keys have these fields' names; a notebook builds it
directly)."""

import dataclasses

from jax_resnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

AUGMENTS = ('none', 'pad_crop_flip', 'inception')
NORMALIZATIONS = ('per_pixel_mean', 'mean_std', 'none')


@dataclasses.dataclass(frozen=True)
class DataSpec:
  dataset: str = 'digits'            # 'digits' (embedded) | 'synthetic' | a TFDS name
  image_size: int = 16               # resolution fed to the model
  num_classes: int = 10              # checked against the dataset (synthetic: its class count)
  batch_size: int = 128              # global train batch, split over processes
  eval_batch_size: int = 512         # global eval batch (the last one padded and masked)
  data_dir: str = ''                 # TFDS data directory ('' = TFDS default)
  train_split: str = 'train'
  eval_split: str = 'test'
  holdout_size: int = 0              # >0: this many train examples become the eval set
  augment: str = 'none'              # one of AUGMENTS
  crop_padding: int = 4              # pad_crop_flip: zero padding before the random crop
  normalize: str = 'per_pixel_mean'  # one of NORMALIZATIONS
  mean: tuple = IMAGENET_MEAN        # 'mean_std': per-channel mean (ImageNet's; a weight tag's
  std: tuple = IMAGENET_STD          # when fine-tuning) and standard deviation
  seed: int = 0                      # shuffle order and augmentation
  num_workers: int = 0               # grain worker processes
  prefetch_batches: int = 2          # grain read-ahead depth
