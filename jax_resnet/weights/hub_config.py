"""The preprocessing a Hub repository records, every value checked before it is used: a timm
config.json's `pretrained_cfg` and a transformers `preprocessor_config.json`. A value this
library cannot follow is one WeightsError naming the repository's file, the key and the value,
never a TypeError or a NaN later.
"""

import math

from jax_resnet.weights import tags
from jax_resnet.weights.trees import WeightsError

MAX_INPUT_SIZE = 1024  # pixels a side: four times the usual 224, twice BiT's 480
MIN_CROP_PCT = 0.5  # the resize (crop / crop_pct) stays within twice the crop
INTERPOLATIONS = ('bilinear', 'bicubic')  # what predict's resize offers (PIL's filters)
RESAMPLE = {2: 'bilinear', 3: 'bicubic'}  # transformers' image processors name PIL's by number


class HubConfigError(WeightsError, ValueError):
  """A value in a Hub repository's config.json or preprocessor_config.json that cannot be
  used."""


def _refuse(what: str, key: str, value, wanted: str):
  shown = repr(value)
  shown = shown if len(shown) <= 60 else shown[:57] + '...'
  raise HubConfigError(f'{what}: {key} is {shown}, not {wanted}; the repository records '
                       'preprocessing this library cannot follow. Fix the file, or load the '
                       'weights with jax_resnet.weights.load and preprocess yourself.')


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
      value)


_SIDES = f'a whole number of pixels from 1 to {MAX_INPUT_SIZE}'


def _is_side(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_INPUT_SIZE


def _crop_pct(what: str, key: str, value, default: float) -> float:
  if value is None:
    return default
  if not (_is_number(value) and MIN_CROP_PCT <= value <= 1):
    _refuse(what, key, value, f'a fraction from {MIN_CROP_PCT} to 1')
  return float(value)


def _statistics(what: str, key: str, value, default, positive: bool):
  if value is None:
    return tuple(default)
  if not (isinstance(value, (list, tuple)) and len(value) == 3
          and all(_is_number(v) and (v > 0 or not positive) for v in value)):
    _refuse(what, key, value, 'three finite numbers (R, G, B)' + (', each above 0'
                                                                   if positive else ''))
  return tuple(float(v) for v in value)


def num_classes(config: dict, what: str) -> int:
  """The class count a Hub config.json records (num_classes, else id2label's size, else
  1000)."""
  value = config.get('num_classes')
  if value is None or value == 0:
    labels = config.get('id2label') or {}
    if not isinstance(labels, dict):
      _refuse(what, 'id2label', labels, 'a mapping of class index to name')
    return len(labels) or 1000
  if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
    _refuse(what, 'num_classes', value, 'a whole number above 0')
  return value


def timm_transform(cfg: dict, what: str) -> dict:
  """preprocess's arguments from a timm config.json's pretrained_cfg (timm's default eval
  transform: input_size, crop_pct, interpolation, mean, std), each value checked."""
  size = cfg.get('input_size')
  if not (isinstance(size, (list, tuple)) and len(size) == 3 and size[0] == 3
          and not isinstance(size[0], bool) and size[1] == size[2]):
    _refuse(what, 'pretrained_cfg.input_size', size,
            f'[3, N, N] (three channels, a square of N pixels up to {MAX_INPUT_SIZE})')
  if not _is_side(size[2]):
    _refuse(what, 'pretrained_cfg.input_size', size, _SIDES)
  side = size[2]
  crop_pct = _crop_pct(what, 'pretrained_cfg.crop_pct', cfg.get('crop_pct'), 0.875)
  interpolation = cfg.get('interpolation', 'bilinear')
  if interpolation not in INTERPOLATIONS:
    _refuse(what, 'pretrained_cfg.interpolation', interpolation,
            ' or '.join(map(repr, INTERPOLATIONS)))
  return dict(crop=side, resize=math.floor(side / crop_pct), interpolation=interpolation,
              mean=_statistics(what, 'pretrained_cfg.mean', cfg.get('mean'),
                               tags.IMAGENET_MEAN, positive=False),
              std=_statistics(what, 'pretrained_cfg.std', cfg.get('std'), tags.IMAGENET_STD,
                              positive=True))


def processor_transform(processor: dict, what: str) -> dict:
  """preprocess's arguments from a transformers preprocessor_config.json, by the rule of the
  ConvNext image processor that microsoft/resnet-* name (and its defaults): below 384, resize
  the shorter side to int(size / crop_pct) and crop size; from 384 on, resize to size."""
  for key in ('do_resize', 'do_normalize', 'do_rescale'):
    if processor.get(key, True) is not True:
      _refuse(what, key, processor[key], 'true (this library always resizes, rescales and '
              'normalises)')
  size = processor.get('size', 384)
  if isinstance(size, dict):
    side = size.get('shortest_edge', size.get('height'))
    if 'shortest_edge' not in size and size.get('width', side) != side:
      _refuse(what, 'size', size, 'a square (height equal to width) or a shortest_edge')
    size = side
  if not _is_side(size):
    _refuse(what, 'size', size, _SIDES)
  resample = processor.get('resample', 3)
  if isinstance(resample, bool) or resample not in RESAMPLE:
    _refuse(what, 'resample', resample, 'a bilinear (2) or bicubic (3) filter')
  crop_pct = _crop_pct(what, 'crop_pct', processor.get('crop_pct'), 224 / 256)
  return dict(crop=size, resize=int(size / crop_pct) if size < 384 else size,
              interpolation=RESAMPLE[resample],
              mean=_statistics(what, 'image_mean', processor.get('image_mean'),
                               tags.INCEPTION_MEAN, positive=False),
              std=_statistics(what, 'image_std', processor.get('image_std'),
                              tags.INCEPTION_STD, positive=True))
