"""Helpers for tests/test_data.py: small data specs and configs, and independently computed
expectations."""

import dataclasses
import functools
import itertools

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jax_resnet as jr
from jax_resnet.config import resolve

SMALL = dict(batch_size=32, eval_batch_size=100, normalize='none')


def config(**overrides):
  """configs/default.py (digits) as a ConfigDict with small batches and the given overrides
  (for the rules the config boundary checks)."""
  c = jr.load_config('default')
  for key, value in {**SMALL, **overrides}.items():
    setattr(c, key, value)
  return c


@functools.lru_cache(maxsize=1)
def _digits_spec():
  return resolve(jr.load_config('default')).data


def spec(**overrides):
  """The input configs/default.py resolves to (digits), with small batches and the given
  overrides: the DataSpec the pipeline functions take."""
  return dataclasses.replace(_digits_spec(), **{**SMALL, **overrides})


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def digits_split():
  """(train images, train labels, test images, test labels): 16x16x3 float in [0, 1], computed
  here with np.kron instead of the library's index map, from the same fixed stratified split."""
  digits = load_digits()
  idx = np.arange(len(digits.target))
  train_idx, test_idx = train_test_split(idx, test_size=360, stratify=digits.target,
                                         random_state=0)

  def images(i):
    up = np.stack([np.kron(im, np.ones((2, 2))) for im in digits.images[i] / 16.0])
    return np.repeat(up[..., None], 3, axis=-1).astype(np.float32)

  return (images(train_idx), digits.target[train_idx], images(test_idx),
          digits.target[test_idx])


def as_rows(images):
  """Each image as one hashable bytes row (for multiset / set comparisons)."""
  images = np.ascontiguousarray(images, dtype=np.float32)
  return sorted(im.tobytes() for im in images)


def crops_and_flips(image, padding):
  """Every image pad_crop_flip can produce from `image` (the augmentation's full support)."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  out = []
  for top in range(2 * padding + 1):
    for left in range(2 * padding + 1):
      crop = padded[top:top + h, left:left + w]
      out += [crop, crop[:, ::-1]]
  return np.stack(out)


def concat_batches(batches):
  return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
