"""Per-example image transforms in NumPy/PIL (they run in grain worker processes, so no JAX).

Images arrive as uint8 HWC arrays, float32 HWC arrays in [0, 1] (the embedded digits) or
encoded JPEG bytes (ImageNet-style TFDS sources read with SkipDecoding), and leave as
float32 (image_size, image_size, C) arrays, normalised.
"""

import dataclasses
import io
import math

import numpy as np
from PIL import Image

from jax_resnet.errors import BadLabelError

from jax_resnet.published import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (the one place)
# ImageNet eval convention: resize the shorter side to size*256/224, then center-crop `size`.
EVAL_CROP_FRACTION = 224 / 256
INCEPTION_SCALE = (0.08, 1.0)
INCEPTION_RATIO = (3 / 4, 4 / 3)
INTERPOLATIONS = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}  # a weight tag's names


def _jpeg_decoder():
  """The fastest JPEG decoder importable here: simplejpeg, then OpenCV, then PIL."""
  try:
    import simplejpeg
    return lambda b: simplejpeg.decode_jpeg(b, colorspace='RGB')
  except ImportError:
    pass
  try:
    import cv2
    return lambda b: cv2.cvtColor(
        cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
  except ImportError:
    pass
  return lambda b: np.asarray(Image.open(io.BytesIO(b)).convert('RGB'))


_DECODE_JPEG = None


def decode(image):
  """Returns `image` as an HWC array; encoded bytes are decoded as RGB JPEG (or PNG via PIL).
  A PIL image (an RGB one from the folder source) passes as it is: the crop and resize read it
  without a full-size array copy."""
  global _DECODE_JPEG
  if isinstance(image, Image.Image):
    return image
  if isinstance(image, np.ndarray) and image.dtype != np.object_:
    return image if image.ndim == 3 else image[..., None]
  data = image.item() if isinstance(image, np.ndarray) else image
  if data[:2] != b'\xff\xd8':  # not JPEG (e.g. PNG): PIL handles every other format
    return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
  if _DECODE_JPEG is None:
    _DECODE_JPEG = _jpeg_decoder()
  return _DECODE_JPEG(data)


def to_float(image):
  """uint8 [0, 255] -> float32 [0, 1]; float images are assumed to be in [0, 1] already."""
  if image.dtype == np.uint8:
    out = image.astype(np.float32)
    out *= np.float32(1 / 255)  # in place: the same values as a product, one allocation less
    return out
  return image.astype(np.float32, copy=False)


def height_width(image):
  """(H, W) of an HWC array or a PIL image."""
  return (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]


def resize(image, height, width, box=None, interpolation='bilinear'):
  """Bilinear (or bicubic; antialiased when shrinking) resize of an HWC image, optionally of
  a crop box.

  box = (left, top, right, bottom) in pixels, as PIL takes it.
  """
  resample = INTERPOLATIONS[interpolation]
  if isinstance(image, Image.Image):  # 8-bit RGB from the folder source
    if image.size == (width, height) and box is None:
      return np.asarray(image)
    return np.asarray(image.resize((width, height), resample, box=box))
  if image.shape[:2] == (height, width) and box is None:
    return image
  if image.dtype == np.uint8 and image.shape[-1] in (1, 3):
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((width, height), resample, box=box))
    return out.reshape(height, width, image.shape[-1])
  channels = [
      np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode='F').resize(
          (width, height), resample, box=box)) for c in range(image.shape[-1])
  ]
  return np.stack(channels, axis=-1).astype(image.dtype, copy=False)


def fit(image, size):
  """Square images are resized to size x size; others keep their aspect ratio (shorter side to
  `size`) and are center-cropped."""
  h, w = height_width(image)
  if (h, w) == (size, size):
    return np.asarray(image)
  if h == w:
    return resize(image, size, size)
  return center_crop_resize(image, size, crop_fraction=1.0)


def center_crop_resize(image, size, crop_fraction=EVAL_CROP_FRACTION, interpolation='bilinear'):
  """Center crop of side min(H, W) * crop_fraction, resized to size x size.

  With crop_fraction 224/256 this equals "resize the shorter side to size*256/224, then
  center-crop size" in one resampling step (no double interpolation).
  """
  h, w = height_width(image)
  side = min(h, w) * crop_fraction
  top, left = (h - side) / 2, (w - side) / 2
  return resize(image, size, size, box=(left, top, left + side, top + side),
                interpolation=interpolation)


def random_resized_crop(image, size, rng, scale=INCEPTION_SCALE, ratio=INCEPTION_RATIO):
  """Inception-style crop (Szegedy et al. 2015, torchvision's RandomResizedCrop rule): a random
  box covering `scale` of the area with aspect ratio in `ratio`, resized to size x size."""
  h, w = height_width(image)
  area = h * w
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    cw = int(round(math.sqrt(target_area * aspect)))
    ch = int(round(math.sqrt(target_area / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top = int(rng.integers(0, h - ch + 1))
      left = int(rng.integers(0, w - cw + 1))
      return resize(image, size, size, box=(left, top, left + cw, top + ch))
  # Fallback as torchvision: the whole image, center-cropped to the allowed aspect range.
  aspect = w / h
  if aspect < ratio[0]:
    cw, ch = w, int(round(w / ratio[0]))
  elif aspect > ratio[1]:
    cw, ch = int(round(h * ratio[1])), h
  else:
    cw, ch = w, h
  top, left = (h - ch) // 2, (w - cw) // 2
  return resize(image, size, size, box=(left, top, left + cw, top + ch))


def pad_crop(image, padding, top, left):
  """Zero-pads `padding` pixels on each side, then crops back to the input size at (top, left)
  of the padded image (0 <= top, left <= 2 * padding)."""
  h, w = height_width(image)
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  return padded[top:top + h, left:left + w]


def random_pad_crop_flip(image, padding, rng):
  """He et al. (2015) CIFAR augmentation: pad, random crop, random horizontal flip."""
  top, left = rng.integers(0, 2 * padding + 1, size=2)
  image = pad_crop(image, padding, int(top), int(left))
  return random_flip(image, rng)


def random_flip(image, rng):
  return image[:, ::-1] if rng.random() < 0.5 else image


_TILED = {}


def _tiled(values, shape):
  """`values` (per channel, or already an image) broadcast to `shape` as a contiguous array:
  numpy's loops over a broadcast last axis of 3 are several times slower than over a whole
  image; the values are the same."""
  if values.shape == shape or values.ndim != 1:
    return values
  key = (values.tobytes(), values.dtype.str, shape)
  if key not in _TILED:
    if len(_TILED) > 16:
      _TILED.clear()
    _TILED[key] = np.ascontiguousarray(np.broadcast_to(values, shape))
  return _TILED[key]


@dataclasses.dataclass(frozen=True, eq=False)
class Normalizer:
  """x <- (x - mean) / std, with mean a per-pixel image or per-channel vector."""
  mean: np.ndarray | None = None
  std: np.ndarray | None = None

  def __call__(self, image, in_place=False):
    """in_place: `image` (float32) is this call's to overwrite; the values are the same."""
    if in_place and image.dtype == np.float32:
      if self.mean is not None:
        image -= _tiled(self.mean, image.shape)
      if self.std is not None:
        image /= _tiled(self.std, image.shape)
      return image
    if self.mean is not None:
      image = image - self.mean
    if self.std is not None:
      image = image / self.std
    return image.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocess:
  """Example dict -> {'image': float32 (size, size, C), 'label': int32}: the per-example work
  of both pipelines. Picklable, so grain can ship it to worker processes."""
  image_size: int
  augment: str  # 'none' | 'pad_crop_flip' | 'inception'
  crop_padding: int
  normalizer: Normalizer
  num_classes: int = 0  # > 0: labels outside [0, num_classes) are refused
  eval_crop_fraction: float = EVAL_CROP_FRACTION  # 'inception' eval: crop side / shorter side
  eval_interpolation: str = 'bilinear'  # 'inception' eval: 'bilinear' | 'bicubic'

  def base(self, image, rng=None):
    """Decode and bring to size x size; random-resized crop + flip for 'inception' training."""
    image = decode(image)
    if self.augment == 'inception':
      if rng is None:
        return center_crop_resize(image, self.image_size, self.eval_crop_fraction,
                                  self.eval_interpolation)
      return random_flip(random_resized_crop(image, self.image_size, rng), rng)
    return fit(image, self.image_size)

  def __call__(self, example, rng=None):
    """rng None: the deterministic eval transform."""
    pixels = self.base(example['image'], rng)
    # A uint8 image becomes a new float array, which normalising may then overwrite.
    image = self.normalizer(to_float(pixels), in_place=pixels.dtype == np.uint8)
    # Padding after normalisation: the pad value 0 is then the (per-pixel) mean in input space.
    if rng is not None and self.augment == 'pad_crop_flip':
      image = random_pad_crop_flip(image, self.crop_padding, rng)
    return {'image': np.ascontiguousarray(image), 'label': self.label(example['label'])}

  def label(self, value):
    # An unlabelled split (TFDS marks ImageNet's test labels -1) would count as zero loss and
    # never as correct: refused here, on the first example, with its value.
    label = int(value)
    if self.num_classes and not 0 <= label < self.num_classes:
      raise BadLabelError(
          f'label {label} is outside [0, {self.num_classes}): the split is unlabelled or has '
          'more classes than num_classes; train and evaluate on labelled splits whose classes '
          'match num_classes.')
    return np.int32(label)


@dataclasses.dataclass(frozen=True)
class TrainMap:
  """grain RandomMap: rng comes from grain, seeded by (config seed, global example position)."""
  preprocess: Preprocess

  def __call__(self, example, rng):
    return self.preprocess(example, rng)


@dataclasses.dataclass(frozen=True)
class EvalMap:
  """grain Map for eval: deterministic transform; padding examples get a zero image, label 0."""
  preprocess: Preprocess

  def __call__(self, example):
    out = self.preprocess(example)
    mask = bool(example['mask'])
    if not mask:
      out = {'image': np.zeros_like(out['image']), 'label': np.int32(0)}
    out['mask'] = np.bool_(mask)
    return out
