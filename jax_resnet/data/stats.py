"""Normalisation statistics: the per-pixel mean image of a training set (He et al. 2015),
computed once per process and cached in memory and, for disk-backed datasets, as a small .npy.
"""

import logging
import os
import re
import tempfile

import numpy as np

from jax_resnet.data import transforms
from jax_resnet.errors import DataError

_MEMORY = {}


def _compute(source, preprocess, name):
  """Mean over `source` (the training split `name`) of the un-augmented, un-normalised image at
  the model's resolution; an example with a NaN or infinite pixel is refused, naming it: it
  would make the mean image, and so every normalised example, NaN."""
  total = None
  for i in range(len(source)):
    image = transforms.to_float(preprocess.base(source[i]['image'])).astype(np.float64)
    bad = image.size - int(np.count_nonzero(np.isfinite(image)))
    if bad:
      raise DataError(
          f'Training example {i} of {name} has {bad} non-finite pixel value(s) (NaN or inf); '
          'the per-pixel mean image would be NaN, and so would every normalised example. Fix '
          "or remove that example, or use normalize='mean_std'.")
    total = image if total is None else total + image
  return (total / len(source)).astype(np.float32)


def _cache_path(cache_dir, cache_name, image_size, num_examples):
  safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', cache_name)
  return os.path.join(cache_dir, f'{safe}-n{num_examples}-{image_size}px-pixel_mean.npy')


def _save(path, value):
  """Atomic write (several hosts may race to write the same file); best effort."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix='.npy',
                                     delete=False) as f:
      np.save(f, value)
    os.replace(f.name, path)
  except OSError as e:
    logging.warning('could not cache the per-pixel mean at %s (%s); it will be recomputed '
                    'by the next run', path, e)


def per_pixel_mean(sources, preprocess):
  """(H, W, C) float32 mean of the training images in [0, 1] pixel units."""
  n = len(sources.train)
  key = (sources.cache_name, sources.cache_dir, preprocess.image_size, n)
  if key in _MEMORY:
    return _MEMORY[key]
  path = None
  if sources.cache_dir:
    path = _cache_path(sources.cache_dir, sources.cache_name, preprocess.image_size, n)
    if os.path.exists(path):
      cached = np.load(path)
      if np.all(np.isfinite(cached)):  # a NaN image cached before examples were checked: redo
        _MEMORY[key] = cached
        return cached
      logging.warning('the cached per-pixel mean %s is not finite; computing it again', path)
  logging.info('computing the per-pixel mean of %d training images (once%s)', n,
               f'; cached at {path}' if path else '')
  mean = _compute(sources.train, preprocess, sources.cache_name)
  if path:
    _save(path, mean)
  _MEMORY[key] = mean
  return mean
