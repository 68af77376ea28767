"""Config checks for the data pipeline: each failure is a ConfigError saying what, why, what to do.
"""

import numbers

from jax_resnet.errors import ConfigError

AUGMENTS = ('none', 'pad_crop_flip', 'inception')
NORMALIZATIONS = ('per_pixel_mean', 'mean_std', 'none')
BUILTIN_DATASETS = ('digits', 'synthetic')
DIGITS_SPLITS = ('train', 'test')
MIN_IMAGE_SIZE = 8


def _check(ok, message):
  if not ok:
    raise ConfigError(message)


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_ints(config):
  for key, low in (('image_size', MIN_IMAGE_SIZE), ('batch_size', 1), ('eval_batch_size', 1),
                   ('holdout_size', 0), ('crop_padding', 0), ('num_workers', 0),
                   ('prefetch_batches', 0), ('num_classes', 1)):
    value = getattr(config, key)
    _check(_is_int(value) and value >= low,
           f'config.{key}={value!r} is invalid: it must be an integer >= {low}'
           + (' (the smallest input the ResNet stems accept); the digits are 8x8, CIFAR 32, '
              'ImageNet 224' if key == 'image_size' else ''))
  _check(_is_int(config.seed), f'config.seed={config.seed!r} must be an integer')


def validate_config(config):
  """Checks the data keys of `config` that do not need the dataset itself."""
  _check(isinstance(config.dataset, str) and config.dataset,
         f'config.dataset={config.dataset!r} must be a dataset name such as '
         f"'digits', 'cifar10', 'imagenet2012' or 'synthetic'")
  _check_ints(config)
  _check(config.augment in AUGMENTS,
         f'config.augment={config.augment!r} is not one of {AUGMENTS}: pick '
         f"'pad_crop_flip' for CIFAR-style data, 'inception' for ImageNet, 'none' otherwise")
  _check(config.normalize in NORMALIZATIONS,
         f'config.normalize={config.normalize!r} is not one of {NORMALIZATIONS}')
  _check(not (config.dataset.startswith('imagenet2012') and config.normalize == 'per_pixel_mean'),
         "config.normalize='per_pixel_mean' is not supported for imagenet2012: a mean image over "
         "1.28M JPEGs is too slow to compute; use --config.normalize=mean_std")
  _check(config.augment != 'pad_crop_flip' or config.crop_padding < config.image_size,
         f'config.crop_padding={config.crop_padding} must be smaller than '
         f'config.image_size={config.image_size} (the CIFAR recipe pads 4 pixels)')
  if config.dataset == 'digits':
    splits = [config.train_split] + ([config.eval_split] if config.holdout_size == 0 else [])
    for split in splits:
      _check(split in DIGITS_SPLITS,
             f"split {split!r} does not exist in the embedded 'digits' dataset: use "
             f"config.train_split='train' and config.eval_split='test'")


def validate_process(config, process_index, process_count):
  """Checks the multi-host arguments against the batch sizes."""
  _check(_is_int(process_count) and process_count >= 1,
         f'process_count={process_count!r} must be a positive integer')
  _check(_is_int(process_index) and 0 <= process_index < process_count,
         f'process_index={process_index!r} must be in [0, {process_count})')
  for key in ('batch_size', 'eval_batch_size'):
    value = getattr(config, key)
    _check(value % process_count == 0,
           f'config.{key}={value} is not divisible by the {process_count} processes: every '
           f'process reads an equal share of each global batch; use a multiple of '
           f'{process_count}')
