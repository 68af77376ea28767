"""The record of what a run's eval pipeline does to an image, written into its workdir when the
run starts (`eval_preprocessing.json`, and `mean_image.npy` for normalize='per_pixel_mean'), so
that every reader of the workdir (predict, export, a server fed by export's JSON) feeds the
network as it was evaluated.

The eval transform (transforms.Preprocess with rng None): decode; a centre square of side
min(H, W) * crop_fraction resized to image_size x image_size in one antialiased bilinear
resampling (PIL; crop_fraction 1 for every augment but 'inception', whose eval crop is
224/256); pixels to [0, 1] (uint8 / 255); then the normalisation: 'mean_std' subtracts the
per-channel `mean` and divides by `std` (ImageNet's, or an init_tag's), 'per_pixel_mean'
subtracts the mean image of the training set, 'none' leaves [0, 1].
"""

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
from typing import Optional

import numpy as np

from jax_resnet.data import transforms
from jax_resnet.data.spec import NORMALIZATIONS, DataSpec
from jax_resnet.errors import DataError
from jax_resnet.utils import created_file_mode

RECORD_FILE = 'eval_preprocessing.json'
MEAN_IMAGE_FILE = 'mean_image.npy'
FORMAT_VERSION = 1
MAX_IMAGE_SIZE = 4096  # the largest image_size a record may state (a 4096^2 x 3 float32 image)


@dataclasses.dataclass(frozen=True, eq=False)
class EvalPreprocessing:
  """What the eval pipeline of one run does; `__call__` applies it to a decoded HWC image
  (uint8, or float32 in [0, 1])."""
  image_size: int
  crop_fraction: float              # 1.0, or transforms.EVAL_CROP_FRACTION for 'inception'
  normalize: str                    # one of spec.NORMALIZATIONS
  mean: Optional[tuple] = None      # 'mean_std': per channel
  std: Optional[tuple] = None
  mean_image: Optional[np.ndarray] = None  # 'per_pixel_mean': (image_size, image_size, 3)
  interpolation: str = 'bilinear'

  def preprocess(self) -> transforms.Preprocess:
    """The pipeline's own per-example transform (the same code the eval batches ran)."""
    augment = 'inception' if self.crop_fraction != 1.0 else 'none'
    return transforms.Preprocess(self.image_size, augment, 0, self.normalizer())

  def normalizer(self) -> transforms.Normalizer:
    if self.normalize == 'mean_std':
      return transforms.Normalizer(np.float32(self.mean), np.float32(self.std))
    if self.normalize == 'per_pixel_mean':
      return transforms.Normalizer(np.asarray(self.mean_image, np.float32))
    return transforms.Normalizer()

  def __call__(self, image: np.ndarray) -> np.ndarray:
    """(image_size, image_size, 3) float32, exactly as the eval pipeline computes it."""
    return self.preprocess()({'image': image, 'label': 0})['image']

  def to_json(self) -> dict:
    """The record as written (the mean image by file name and SHA-256)."""
    record = {'format_version': FORMAT_VERSION, 'image_size': self.image_size,
              'crop_fraction': self.crop_fraction, 'interpolation': self.interpolation,
              'antialias': True, 'pixel_range': [0.0, 1.0], 'normalize': self.normalize,
              'mean': None if self.mean is None else [float(v) for v in self.mean],
              'std': None if self.std is None else [float(v) for v in self.std],
              'mean_image': None, 'mean_image_sha256': None}
    if self.mean_image is not None:
      record['mean_image'] = MEAN_IMAGE_FILE
      record['mean_image_sha256'] = hashlib.sha256(_npy_bytes(self.mean_image)).hexdigest()
    return record


def of_spec(spec: DataSpec) -> EvalPreprocessing:
  """The eval preprocessing of `spec`, read from the pipeline it builds (so the per-pixel mean
  is the one the run subtracts; computing it opens the dataset)."""
  from jax_resnet.data import pipeline
  normalizer = pipeline._resolve(spec).preprocess.normalizer
  fraction = transforms.EVAL_CROP_FRACTION if spec.augment == 'inception' else 1.0
  common = dict(image_size=int(spec.image_size), crop_fraction=fraction,
                normalize=spec.normalize)
  if spec.normalize == 'mean_std':
    return EvalPreprocessing(**common, mean=tuple(float(v) for v in spec.mean),
                             std=tuple(float(v) for v in spec.std))
  if spec.normalize == 'per_pixel_mean':
    size = int(spec.image_size)
    image = np.broadcast_to(np.asarray(normalizer.mean, np.float32), (size, size, 3))
    return EvalPreprocessing(**common, mean_image=np.ascontiguousarray(image))
  return EvalPreprocessing(**common)


def _npy_bytes(array) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(array, np.float32), allow_pickle=False)
  return buffer.getvalue()


def _write_atomic(path: str, payload: bytes):
  """`payload` to `path` through a fresh temporary (mkstemp: O_EXCL, never a link) renamed
  into place, created with the mode the umask gives."""
  folder = os.path.dirname(os.path.abspath(path))
  descriptor, temporary = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(descriptor, 'wb') as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temporary, created_file_mode())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def write(record: EvalPreprocessing, workdir: str):
  """Writes the record into `workdir`: the mean image first, then the JSON naming its
  SHA-256, so a reader never pairs a JSON with another mean image."""
  if record.mean_image is not None:
    _write_atomic(os.path.join(workdir, MEAN_IMAGE_FILE), _npy_bytes(record.mean_image))
  text = json.dumps(record.to_json(), indent=2) + '\n'
  _write_atomic(os.path.join(workdir, RECORD_FILE), text.encode())


def read(workdir: str) -> Optional[EvalPreprocessing]:
  """The record in `workdir`; None when it has none (a workdir of an older version).
  A record that is unreadable or wrong is a DataError naming the file."""
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.lexists(path):
    return None
  try:
    with open(path, 'rb') as f:
      record = json.loads(f.read())
  except (OSError, ValueError) as error:
    raise DataError(f'cannot read {path}: {getattr(error, "strerror", None) or error}; it '
                    'records how the run fed its images, so predictions without it would be '
                    'guesses: restore it from a copy of the workdir.') from None
  return _checked(record, workdir, path)


def _fail(path, what):
  raise DataError(f'{path} is not a valid eval preprocessing record: {what}; restore it from '
                  'a copy of the workdir.')


def _vector(record, key, path, positive=False):
  value = record.get(key)
  if (not isinstance(value, list) or len(value) != 3
      or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
      or (positive and min(value) <= 0)):
    _fail(path, f'{key} must be 3 finite numbers' + (' above 0' if positive else ''))
  return tuple(float(v) for v in value)


def _checked(record, workdir, path) -> EvalPreprocessing:
  if not isinstance(record, dict) or record.get('format_version') != FORMAT_VERSION:
    _fail(path, f'format_version is not {FORMAT_VERSION} (written by another version?)')
  size, fraction = record.get('image_size'), record.get('crop_fraction')
  if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_IMAGE_SIZE:
    _fail(path, f'image_size must be an integer in [1, {MAX_IMAGE_SIZE}]')
  if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
    _fail(path, 'crop_fraction must be in (0, 1]')
  normalize = record.get('normalize')
  if normalize not in NORMALIZATIONS or record.get('interpolation') != 'bilinear':
    _fail(path, f'normalize must be one of {", ".join(NORMALIZATIONS)} and interpolation '
                'bilinear')
  common = dict(image_size=size, crop_fraction=float(fraction), normalize=normalize)
  if normalize == 'mean_std':
    return EvalPreprocessing(**common, mean=_vector(record, 'mean', path),
                             std=_vector(record, 'std', path, positive=True))
  if normalize == 'per_pixel_mean':
    return EvalPreprocessing(**common, mean_image=_mean_image(record, workdir, size))
  return EvalPreprocessing(**common)


def _mean_image(record, workdir, size) -> np.ndarray:
  path = os.path.join(workdir, MEAN_IMAGE_FILE)
  try:
    with open(path, 'rb') as f:
      payload = f.read(64 * size * size * 3 + 4096)  # bounded: a float32 image and its header
  except OSError as error:
    raise DataError(f'cannot read {path}: {error.strerror}; it is the mean image this run '
                    'subtracts (normalize=per_pixel_mean): restore it from a copy of the '
                    'workdir.') from None
  if hashlib.sha256(payload).hexdigest() != record.get('mean_image_sha256'):
    raise DataError(f'{path} does not match the SHA-256 in {RECORD_FILE} (changed or damaged '
                    'since the run wrote it): restore it from a copy of the workdir.')
  image = np.load(io.BytesIO(payload), allow_pickle=False)
  if image.shape != (size, size, 3) or not np.all(np.isfinite(image)):
    _fail(os.path.join(workdir, RECORD_FILE), f'its mean image is not ({size}, {size}, 3) and '
                                              'finite')
  return image.astype(np.float32)


def same(a: EvalPreprocessing, b: EvalPreprocessing) -> bool:
  """Whether two records describe the same transform."""
  images_equal = (a.mean_image is None) == (b.mean_image is None) and (
      a.mean_image is None or np.array_equal(a.mean_image, b.mean_image))
  return a.to_json() == b.to_json() and images_equal
