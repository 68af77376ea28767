"""The eval transform as fields (`Preprocessing`) and as a JAX function of uint8 images
(`preprocessing_function`), so that an exported program can take the images a server has and
compute what `images.preprocess` computes, pixel for pixel as PIL resamples."""

import dataclasses
from typing import Optional, Tuple

import jax.numpy as jnp
import numpy as np

from jax_resnet.inference import images as image_files


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """What `predict.preprocess` does to an image, as fields (a weight tag's, torchvision
  V1's, or a trainer workdir's eval transform): shorter side to `resize` (`interpolation`,
  antialiased), centre crop `crop`, scale to [0, 1], subtract `mean_image` when set (a run
  with normalize='per_pixel_mean'; (crop, crop, 3)) else `mean`, divide by `std`."""
  resize: int = image_files.RESIZE
  crop: int = image_files.CROP
  interpolation: str = 'bilinear'
  mean: Tuple[float, float, float] = tuple(float(v) for v in image_files.IMAGENET_MEAN)
  std: Tuple[float, float, float] = tuple(float(v) for v in image_files.IMAGENET_STD)
  mean_image: Optional[np.ndarray] = dataclasses.field(default=None, compare=False)
  normalize: str = 'mean_std'  # as the trainer's key: 'mean_std' | 'per_pixel_mean' | 'none'

  @property
  def subtracted(self) -> np.ndarray:
    """What is subtracted from [0, 1] pixels: the mean image, else the per-channel mean."""
    return np.float32(self.mean if self.mean_image is None else self.mean_image)

  def to_json(self) -> dict:
    fields = dataclasses.asdict(self)
    fields['mean_image'] = None if self.mean_image is None else self.subtracted.tolist()
    return fields


def of_eval_record(record) -> Preprocessing:
  """The Preprocessing of a trainer workdir's eval transform (`record`: its
  data.eval_record.EvalPreprocessing) for square images of the run's `image_size` (resize and
  crop both that side); what 'none' and 'per_pixel_mean' subtract and divide by as mean/std."""
  ones, zeros = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
  if record.normalize == 'mean_std':
    mean, std = record.mean, record.std
  else:  # 'none' and 'per_pixel_mean' divide by nothing; 'none' subtracts nothing
    mean, std = zeros, ones
  size = record.image_size
  return Preprocessing(resize=size, crop=size, interpolation=record.interpolation,
                       mean=tuple(mean), std=tuple(std), mean_image=record.mean_image,
                       normalize=record.normalize)


def _keys_cubic(x, a=-0.5):
  """Keys' cubic convolution kernel (1981) with a = -0.5, PIL's and torchvision's bicubic."""
  x = np.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = ((x - 5) * x + 8) * x * a - 4 * a
  return np.where(x < 1, near, np.where(x < 2, far, 0.0))


# interpolation -> (kernel support, kernel): PIL's BILINEAR (triangle) and BICUBIC filters.
_FILTERS = {'bilinear': (1.0, lambda x: np.maximum(0.0, 1.0 - np.abs(x))),
            'bicubic': (2.0, _keys_cubic)}


def resampling_matrix(in_size: int, out_size: int, interpolation: str) -> np.ndarray:
  """(out_size, in_size) float64 weights of an antialiased resize along one axis, as PIL's
  resize computes them: output pixel i centred at (i + 0.5) * in/out, the kernel widened by the
  downscale factor (a low-pass filter; never narrowed when upscaling) and normalised over the
  taps inside the image. (jax.image.resize computes these weights in float32 and its result
  in floating point; PIL's ties at x.5, frequent with such rational weights, need PIL's own
  fixed-point arithmetic, below.)"""
  support, kernel = _FILTERS[interpolation]
  scale = in_size / out_size
  widen = max(scale, 1.0)
  centres = (np.arange(out_size) + 0.5) * scale
  taps = np.arange(in_size) + 0.5
  weights = kernel((taps[None, :] - centres[:, None]) / widen)
  weights = np.where(np.abs(taps[None, :] - centres[:, None]) < support * widen, weights, 0.0)
  return weights / weights.sum(axis=1, keepdims=True)


# PIL resamples 8-bit images with its weights in fixed point, 22 fractional bits (ties and
# rounding then fall as its do: the result equals PIL's pixel for pixel, tests/test_export.py).
_WEIGHT_BITS = 22


def _fixed_point(weights: np.ndarray) -> np.ndarray:
  """Weights as integers of 2**-22, each rounded half away from zero."""
  scaled = weights * (1 << _WEIGHT_BITS)
  return np.trunc(scaled + np.where(scaled < 0, -0.5, 0.5)).astype(np.int32)


def _resample_8_bits(pixels, weights, subscripts: str):
  """One resize pass on int32 pixels: the fixed-point weighted sums, rounded half up and
  clipped to 0..255. |sum| < 255 * 1.3 * 2**22 < 2**31 for these kernels."""
  total = jnp.einsum(subscripts, pixels, weights, preferred_element_type=jnp.int32)
  return jnp.clip(jnp.right_shift(total + (1 << (_WEIGHT_BITS - 1)), _WEIGHT_BITS), 0, 255)


def preprocessing_function(preprocessing: Preprocessing, height: int, width: int):
  """(N, height, width, 3) uint8 -> (N, crop, crop, 3) float32: `predict.preprocess` as a JAX
  function of static image size. As PIL: the width pass, then the height pass, each an 8-bit
  image; only the crop's rows and columns are computed."""
  new_width, new_height = image_files.resized_size(width, height, preprocessing.resize)
  top, left = image_files.crop_offsets(new_width, new_height, preprocessing.crop)
  crop = preprocessing.crop
  interpolation = preprocessing.interpolation
  columns = _fixed_point(resampling_matrix(width, new_width, interpolation)[left:left + crop])
  rows = _fixed_point(resampling_matrix(height, new_height, interpolation)[top:top + crop])
  mean = preprocessing.subtracted
  std = np.float32(preprocessing.std)

  def apply(images):
    pixels = jnp.asarray(images, jnp.int32)
    pixels = _resample_8_bits(pixels, columns, 'nhwc,vw->nhvc')
    pixels = _resample_8_bits(pixels, rows, 'nhwc,uh->nuwc')
    return (jnp.asarray(pixels, jnp.float32) / np.float32(255.0) - mean) / std

  return apply
