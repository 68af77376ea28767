"""What the input pipelines need to know, as plain values, and every rule on them (`check`
before a run, `check_against_dataset` once the dataset is open), each failure one DataError.
The trainer builds a DataSpec from its config in jax_resnet.config.boundary, whose keys have
these fields' names and whose base values are these defaults; a notebook builds it directly."""

import dataclasses

from jax_resnet.data import folder
from jax_resnet.data.transforms import EVAL_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD
from jax_resnet.errors import DataError, check_choice

AUGMENTS = ('none', 'pad_crop_flip', 'inception')
NORMALIZATIONS = ('per_pixel_mean', 'mean_std', 'none')
DIGITS_SPLITS = ('train', 'test')  # the embedded digits' only splits
SYNTHETIC_NUM_CLASSES = 1000       # synthetic data's classes when num_classes is 0


@dataclasses.dataclass(frozen=True)
class DataSpec:
  dataset: str = 'imagenet2012'      # 'digits' (embedded) | 'synthetic' | a TFDS name |
  #                                    'folder:PATH' (data/folder.py)
  image_size: int = 224              # resolution fed to the model
  num_classes: int = 0               # checked against the dataset (synthetic: its class
  #                                    count); 0: the dataset's (`class_count`)
  batch_size: int = 256              # global train batch, split over processes
  eval_batch_size: int = 256         # global eval batch (the last one padded and masked)
  data_dir: str = ''                 # TFDS data directory ('' = TFDS default)
  train_split: str = 'train'
  eval_split: str = 'validation'
  holdout_size: int = 0              # >0: this many train examples become the eval set
  augment: str = 'none'              # one of AUGMENTS
  crop_padding: int = 4              # pad_crop_flip: zero padding before the random crop
  normalize: str = 'mean_std'        # one of NORMALIZATIONS
  mean: tuple = IMAGENET_MEAN        # 'mean_std': per-channel mean (ImageNet's; a weight tag's
  std: tuple = IMAGENET_STD          # when fine-tuning) and standard deviation
  seed: int = 0                      # shuffle order and augmentation
  num_workers: int = 0               # grain worker processes
  prefetch_batches: int = 2          # grain read-ahead depth
  skip_unreadable: bool = False      # folder: leave out image files PIL cannot read (counted)
  split_record: str = ''             # folder: a split.json to read the files from, if it
  #                                    exists (the trainer's workdir's)
  eval_crop_fraction: float = EVAL_CROP_FRACTION  # 'inception' eval: centre crop side over
  #                                    the shorter side (a weight tag's crop / resize)
  eval_interpolation: str = 'bilinear'  # 'inception' eval: 'bilinear' | 'bicubic' (a weight
  #                                    tag's)


def check(spec: DataSpec):
  """The rules a DataSpec must meet before any data is read (the config boundary asks them)."""
  check_choice(DataError, 'augment', spec.augment, AUGMENTS)
  check_choice(DataError, 'normalize', spec.normalize, NORMALIZATIONS)
  if spec.dataset.startswith('imagenet2012') and spec.normalize == 'per_pixel_mean':
    raise DataError("normalize='per_pixel_mean' is not supported for imagenet2012: a mean image "
                    'over 1.28M JPEGs is too slow to compute; use --config.normalize=mean_std.')
  if spec.augment == 'pad_crop_flip' and spec.crop_padding >= spec.image_size:
    raise DataError(f'crop_padding={spec.crop_padding} must be smaller than '
                    f'image_size={spec.image_size} (the CIFAR recipe pads 4 pixels).')
  if folder.is_folder(spec.dataset):
    names = folder.class_names(spec.dataset)
    if spec.num_classes and spec.num_classes != len(names):
      raise DataError(f'num_classes={spec.num_classes} but {spec.dataset} has {len(names)} '
                      f'class folders; set --config.num_classes={len(names)} or 0 (the '
                      'folder\'s count).')
  if spec.dataset == 'digits':
    for split in [spec.train_split] + ([spec.eval_split] if spec.holdout_size == 0 else []):
      if split not in DIGITS_SPLITS:
        raise DataError(f"split {split!r} does not exist in the embedded 'digits' dataset: use "
                        "train_split='train' and eval_split='test'.")


def class_count(spec: DataSpec) -> int:
  """The number of classes of `spec.dataset` (what num_classes=0 stands for): a folder's
  class folders, the digits' 10, the label feature's classes of a TFDS dataset."""
  if folder.is_folder(spec.dataset):
    return len(folder.class_names(spec.dataset))
  if spec.dataset == 'digits':
    return 10
  if spec.dataset == 'synthetic':
    return SYNTHETIC_NUM_CLASSES
  from jax_resnet.data import tfds_source
  try:
    builder = tfds_source.builder(spec.dataset, spec.data_dir)
  except ImportError:
    raise DataError(f'num_classes=0 asks {spec.dataset!r} for its classes, which needs '
                    'tensorflow_datasets, not installed; set --config.num_classes.') from None
  return int(builder.info.features['label'].num_classes)


def check_against_dataset(spec: DataSpec, info):
  """The rules that need the dataset opened (`info`: its DatasetInfo, after any holdout)."""
  if info.num_eval == 0:
    where = (f'holdout_size={spec.holdout_size}' if spec.holdout_size > 0 else
             f'eval_split {spec.eval_split!r} of {spec.dataset!r}')
    raise DataError(f'{where} holds no examples, so nothing can be evaluated; choose a split (or '
                    'a TFDS slice) that has some.')
  if spec.dataset != 'synthetic' and spec.num_classes and info.num_classes != spec.num_classes:
    raise DataError(f"num_classes={spec.num_classes} but dataset {spec.dataset!r} has "
                    f'{info.num_classes} classes; set --config.num_classes={info.num_classes}.')
