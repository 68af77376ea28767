"""Random-access example sources: the embedded digits, synthetic images, TFDS (tfds_source.py),
and the holdout / eval-padding views over them.

A source is anything with __len__ and __getitem__(int) -> {'image': HWC array or encoded
bytes, 'label': int}; grain reads it by index. Every source here is picklable (grain workers).
"""

import dataclasses
import functools
from typing import Any

import numpy as np

DIGITS_NUM_TEST = 360  # 1,797 = 1,437 train + 360 test
DIGITS_SPLIT_SEED = 0  # fixed: the split never depends on config.seed
HOLDOUT_SEED = 0       # fixed: the held-out set never depends on config.seed
SYNTHETIC_NUM_TRAIN = 1_281_167  # ImageNet-sized virtual epoch for throughput runs
SYNTHETIC_NUM_EVAL = 50_000


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know about the data (after any holdout)."""
  num_classes: int
  num_train: int
  num_eval: int
  image_shape: tuple[int, int, int]  # (H, W, C) as the model sees it
  # Descriptions, left out of equality (two infos are equal when the model sees the same):
  # class i's name when the dataset names its classes; (file, reason) of unreadable files
  # left out (skip_unreadable).
  class_names: tuple = dataclasses.field(default=(), compare=False)
  skipped: tuple = dataclasses.field(default=(), compare=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Sources:
  """The train and eval sources of one config (holdout already applied)."""
  train: Any
  eval: Any
  num_classes: int
  channels: int
  cache_name: str  # identifies the data for cached statistics, e.g. 'cifar10-3.0.2-train'
  cache_dir: str | None = None  # where statistics may be cached on disk (None: memory only)
  class_names: tuple = ()  # class i's name, when the dataset names its classes
  split: dict | None = None  # the files of each split, for the workdir (folder datasets)
  skipped: tuple = ()      # (file, reason) of unreadable files left out


@functools.lru_cache(maxsize=1)
def _digits_arrays():
  """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int32, train idx, test idx)."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)
  labels = digits.target.astype(np.int32)
  train_idx, test_idx = train_test_split(
      np.arange(len(labels)), test_size=DIGITS_NUM_TEST, stratify=labels,
      random_state=DIGITS_SPLIT_SEED)
  return images, labels, np.sort(train_idx), np.sort(test_idx)


class DigitsSource:
  """scikit-learn's 8x8 digits, nearest-upsampled to size x size, gray repeated to 3 channels."""

  def __init__(self, images, labels, image_size):
    self._images = images
    self._labels = labels
    # Nearest-neighbour index map: exact pixel replication when size is a multiple of 8.
    self._rows = (np.arange(image_size) * images.shape[1]) // image_size
    self._cols = (np.arange(image_size) * images.shape[2]) // image_size

  def __len__(self):
    return len(self._labels)

  def __getitem__(self, index):
    gray = self._images[index][self._rows][:, self._cols]
    return {'image': np.repeat(gray[..., None], 3, axis=-1), 'label': int(self._labels[index])}


def digits_sources(split_names, image_size):
  """Sources for 'digits'; split_names = (train_split, eval_split), each 'train' or 'test'."""
  images, labels, train_idx, test_idx = _digits_arrays()
  by_name = {'train': train_idx, 'test': test_idx}
  train, evals = (DigitsSource(images[by_name[s]], labels[by_name[s]], image_size)
                  for s in split_names)
  return Sources(train=train, eval=evals, num_classes=10, channels=3,
                 cache_name=f'digits-{split_names[0]}',
                 class_names=tuple(str(digit) for digit in range(10)))


class SyntheticSource:
  """Deterministic random uint8 images and labels: example i is the same in every run."""

  def __init__(self, length, image_size, num_classes, stream):
    self._length = length
    self._shape = (image_size, image_size, 3)
    self._num_classes = num_classes
    self._stream = stream  # keeps train and eval examples distinct

  def __len__(self):
    return self._length

  def __getitem__(self, index):
    rng = np.random.default_rng([self._stream, index])
    image = rng.integers(0, 256, size=self._shape, dtype=np.uint8)
    return {'image': image, 'label': int(rng.integers(self._num_classes))}


def synthetic_sources(image_size, num_classes):
  return Sources(
      train=SyntheticSource(SYNTHETIC_NUM_TRAIN, image_size, num_classes, stream=0),
      eval=SyntheticSource(SYNTHETIC_NUM_EVAL, image_size, num_classes, stream=1),
      num_classes=num_classes, channels=3, cache_name='synthetic')


class Subset:
  """The examples of `source` at `indices`, in that order."""

  def __init__(self, source, indices):
    self._source = source
    self._indices = np.asarray(indices, dtype=np.int64)

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, index):
    return self._source[int(self._indices[index])]


def with_holdout(sources, holdout_size):
  """Train = all but the last `holdout_size` examples of a fixed permutation of the train
  source; eval = those last examples (He et al. 2015's CIFAR 45k/5k train/val split)."""
  n = len(sources.train)
  perm = np.random.default_rng(HOLDOUT_SEED).permutation(n)
  # Sorted so that reads stay sequential-ish on disk; order is shuffled later anyway.
  train = Subset(sources.train, np.sort(perm[:n - holdout_size]))
  held = Subset(sources.train, np.sort(perm[n - holdout_size:]))
  return dataclasses.replace(sources, train=train, eval=held,
                             cache_name=f'{sources.cache_name}-holdout{holdout_size}')


class Padded:
  """`source` extended to `length` examples; the extra ones repeat example 0 with mask False."""

  def __init__(self, source, length):
    self._source = source
    self._length = length

  def __len__(self):
    return self._length

  def __getitem__(self, index):
    valid = index < len(self._source)
    example = self._source[index if valid else 0]
    return {'image': example['image'], 'label': example['label'], 'mask': valid}
