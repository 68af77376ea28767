"""TFDS datasets read through `tfds.data_source` (ArrayRecord random access, no TensorFlow).

Every failure to open a dataset becomes a one-line-fixable error: DataNotFoundError naming the
`python -m jax_resnet.data prepare ...` command, or DataError for a bad name or split.
"""

import os

from jax_resnet.errors import DataError, DataNotFoundError
from jax_resnet.data.sources import Sources

IMAGENET_MANUAL_FILES = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
RANDOM_ACCESS_FORMATS = ('array_record', 'parquet')


def import_tfds():
  import tensorflow_datasets as tfds
  return tfds


def default_data_dir(data_dir):
  """The directory TFDS uses for `data_dir` ('' = TFDS's default, honouring TFDS_DATA_DIR)."""
  if data_dir:
    return os.path.expanduser(data_dir)
  tfds = import_tfds()
  return os.environ.get('TFDS_DATA_DIR') or tfds.core.constants.DATA_DIR


def manual_dir(data_dir):
  """TFDS's default manual_dir for `data_dir`: <data_dir>/downloads/manual."""
  return os.path.join(default_data_dir(data_dir), 'downloads', 'manual')


def prepare_command(name, data_dir):
  cmd = f'python -m jax_resnet.data prepare {name}'
  return cmd + (f' --data_dir {data_dir}' if data_dir else '')


def not_prepared_message(name, data_dir):
  where = default_data_dir(data_dir)
  msg = (f"dataset '{name}' is not prepared in {where} (training reads it with "
         f"tfds.data_source, which needs array_record files, and never downloads); ")
  if name.startswith('imagenet2012'):
    msg += (f"put {' and '.join(IMAGENET_MANUAL_FILES)} (from image-net.org, login required) "
            f"in TFDS's manual_dir {manual_dir(data_dir)}, then ")
  return msg + f'run: {prepare_command(name, data_dir)}'


def builder(name, data_dir):
  """tfds.builder for `name`; an unknown name is a DataError."""
  tfds = import_tfds()
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(
        f"dataset='{name}' is not a known dataset: it is neither built in "
        f"('digits', 'synthetic') nor a TFDS dataset name; use one of those, e.g. 'cifar10', "
        f"'cifar100', 'imagenet2012'") from e


def _diagnose(name, data_dir, split, error):
  """The user-facing error for a failed tfds.data_source call."""
  b = builder(name, data_dir)
  if not b.is_prepared():
    return DataNotFoundError(not_prepared_message(name, data_dir))
  formats = {str(getattr(f, 'value', f)) for f in b.info.available_file_formats()}
  if not formats.intersection(RANDOM_ACCESS_FORMATS):
    return DataNotFoundError(
        f"dataset '{name}' is prepared at {b.data_dir} in {sorted(formats)} format, which has "
        f"no random access (tfds.data_source needs array_record); delete that directory or "
        f"choose another --data_dir, then run: {prepare_command(name, data_dir)}")
  splits = sorted(b.info.splits.keys())
  return DataError(
      f"cannot read split '{split}' of dataset '{name}' ({type(error).__name__}: "
      f"{str(error).splitlines()[0] if str(error) else ''}); available splits: {splits}; set "
      f"train_split / eval_split to one of them (TFDS slicing like "
      f"'train[:90%]' is allowed)")


def open_split(name, split, data_dir, decoders):
  tfds = import_tfds()
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False,
                            decoders=decoders)
  except (DataError, DataNotFoundError):
    raise
  except Exception as e:
    # TFDS raises NotImplementedError/ValueError/FileNotFoundError/KeyError depending on how
    # the data is missing; turn each into an error that says what to do.
    raise _diagnose(name, data_dir, split, e) from e


def tfds_sources(name, data_dir, split_names):
  """Sources for a TFDS dataset; split_names = (train_split, eval_split or None)."""
  tfds = import_tfds()
  b = builder(name, data_dir)
  features = b.info.features
  missing = [k for k in ('image', 'label') if k not in features]
  if missing:
    raise DataError(
        f"dataset '{name}' has no {missing} feature; the image pipeline needs 'image' and "
        f"'label' (an image classification dataset such as 'cifar10')")
  decoders = None
  if getattr(features['image'], 'encoding_format', None) == 'jpeg':
    # Decode in our transform (simplejpeg/cv2/PIL, see transforms.decode), inside the grain
    # workers, instead of TFDS's numpy decoder.
    decoders = {'image': tfds.decode.SkipDecoding()}
  train = open_split(name, split_names[0], data_dir, decoders)
  evals = open_split(name, split_names[1], data_dir, decoders) if split_names[1] else None
  channels = features['image'].shape[-1] or 3
  version = f'{b.name}-{b.version}'
  names = getattr(features['label'], 'names', None) or ()
  return Sources(train=train, eval=evals, num_classes=int(features['label'].num_classes),
                 channels=int(channels), cache_name=f'{version}-{split_names[0]}',
                 class_names=tuple(str(n) for n in names),
                 cache_dir=os.path.join(default_data_dir(data_dir), 'jax_resnet_cache'))
