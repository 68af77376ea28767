"""Image files to model inputs, as the published transforms and the trainer read them.

`preprocess` is torchvision's and timm's eval transform (Resize, CenterCrop, ToTensor,
Normalize) on a PIL image, channels last; `read_image` the same for a file, every failure an
`ImageError` naming it; `read_image_as_trained` a file through a run's recorded eval transform
(`data.eval_record.EvalPreprocessing`); `image_paths` the files a list of files and folders
names; `check_image` a file's header, read before any batch runs.

EXIF orientation is not applied by default, as torchvision's ImageFolder and `decode_image`
(apply_exif_orientation=False), timm's datasets and the trainer's pipeline read images: the
pixels as stored. `exif_transpose=True` turns a photo upright first (PIL's
ImageOps.exif_transpose, what image viewers show).
"""

import contextlib
import os

import numpy as np

from jax_resnet.data import transforms
from jax_resnet.data.pixels import SIXTEEN_BIT_MODES, unit_grey
from jax_resnet.errors import UserError

# float32 as torchvision's Normalize computes: preprocess matches it bit for bit.
IMAGENET_MEAN = np.float32(transforms.IMAGENET_MEAN)
IMAGENET_STD = np.float32(transforms.IMAGENET_STD)
RESIZE, CROP = 256, 224
MAX_RESIZED_PIXELS = 1 << 26  # one resized image at most (64 M pixels, 192 MB in 8 bits)


class InferenceError(UserError):
  """Input the inference layer cannot use (weights, a model, a transform, class names)."""


class ImageError(InferenceError):
  """An image that cannot be read; the message names the file."""


def resized_size(width: int, height: int, shorter: int = RESIZE):
  """torchvision Resize(int): the shorter side becomes `shorter`, the longer one is scaled and
  truncated to an int, as torchvision's `_compute_resized_output_size` does."""
  if width <= height:
    return shorter, int(shorter * height / width)
  return int(shorter * width / height), shorter


def crop_offsets(width: int, height: int, crop: int):
  """(top, left) of torchvision's CenterCrop(crop) in a width x height image."""
  return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def preprocess(image, resize: int = RESIZE, crop: int = CROP, interpolation: str = 'bilinear',
               mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
  """PIL image -> (crop, crop, 3) float32: Resize(resize, interpolation), CenterCrop(crop),
  ToTensor, Normalize(mean, std) as torchvision's and timm's eval transforms, channels last.
  The defaults are torchvision's V1 ImageNet transform; a weight tag gives each checkpoint's
  own (`jax_resnet.weights.get_tag`)."""
  from PIL import Image
  filter_ = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}[interpolation]
  grey = unit_grey(image)
  # 8-bit modes take torchvision's path bit for bit; wider ones a float plane in [0, 1].
  image, divisor = (image.convert('RGB'), 255.0) if grey is None else (grey, 1.0)
  image = image.resize(resized_size(*image.size, shorter=resize), filter_)
  top, left = crop_offsets(*image.size, crop)
  image = image.crop((left, top, left + crop, top + crop))
  pixels = np.asarray(image, np.float32) / divisor
  if pixels.ndim == 2:  # the grey plane, as convert('RGB') would give it
    pixels = np.repeat(pixels[..., None], 3, axis=-1)
  return (pixels - np.float32(mean)) / np.float32(std)


def read_image(path: str, resize: int = RESIZE, exif_transpose: bool = False,
               **transform) -> np.ndarray:
  """`preprocess` of the image file at `path` (transform: preprocess's other arguments)."""
  def convert(image):
    width, height = resized_size(*image.size, shorter=resize)
    if width * height > MAX_RESIZED_PIXELS:
      raise ValueError(f'resizing its {image.width}x{image.height} pixels to a shorter side of '
                       f'{resize} gives {width}x{height}, more than {MAX_RESIZED_PIXELS} '
                       'pixels; crop it or pass a smaller --resize')
    return preprocess(image, resize, **transform)
  return _read(path, convert, exif_transpose)


def read_image_as_trained(path: str, record, exif_transpose: bool = False) -> np.ndarray:
  """The image file at `path` through a run's eval transform (`record`: its
  data.eval_record.EvalPreprocessing): the pipeline's own code on the decoded pixels."""
  return _read(path, lambda image: record(image_array(image)), exif_transpose)


def image_array(image) -> np.ndarray:
  """A PIL image as the trainer's pipeline takes it: (H, W, 3) uint8 for 8-bit modes, float32
  in [0, 1] (the grey plane of `unit_grey`, repeated) for wider ones."""
  grey = unit_grey(image)
  if grey is None:
    return np.asarray(image.convert('RGB'))
  return np.repeat(np.asarray(grey, np.float32)[..., None], 3, axis=-1)


@contextlib.contextmanager
def _reading(path: str):
  """Every failure of reading the image at `path` as one ImageError naming it."""
  from PIL import Image, UnidentifiedImageError
  try:
    yield
  except Image.DecompressionBombError as error:  # PIL's own refusal, at twice its limit
    raise ImageError(f'cannot read image {path}: {str(error).splitlines()[0]}') from None
  except (OSError, UnidentifiedImageError, ValueError) as error:
    reason = getattr(error, 'strerror', None) or str(error).splitlines()[0]
    raise ImageError(f'cannot read image {path}: {reason}') from None


def _read(path: str, convert, exif_transpose: bool = False) -> np.ndarray:
  """convert(PIL image) of the image file at `path`; every failure an ImageError naming it."""
  from PIL import Image, ImageOps
  with _reading(path), Image.open(path) as image:  # Image.open reads the header only
    _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
    return convert(ImageOps.exif_transpose(image) if exif_transpose else image)


def check_image(path: str):
  """Opens the image file at `path` and checks its header (format, declared size), decoding
  only wide-mode pixels (their range): every input is checked before the first batch runs."""
  from PIL import Image
  with _reading(path), Image.open(path) as image:
    _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
    if image.mode in SIXTEEN_BIT_MODES + ('I', 'F'):
      unit_grey(image)  # the range check of wide modes (it decodes: such files are rare)


def _check_pixels(path: str, width: int, height: int, limit: int):
  """Refuses an image before decoding when its header declares more pixels than PIL's limit:
  decoding it would take gigabytes to classify a 224x224 crop."""
  if limit and width * height > limit:
    raise ImageError(f'cannot read image {path}: it declares {width}x{height} pixels, more than '
                     f'the {limit} PIL allows (PIL.Image.MAX_IMAGE_PIXELS); resize it first.')


def image_paths(arguments) -> list:
  """The image files named: a file as given; a folder, every file under it whose extension
  PIL reads, recursively, in sorted order (sub-folders in their sorted place)."""
  from PIL import Image
  extensions = set(Image.registered_extensions())
  paths = []
  for argument in arguments:
    if not argument:
      raise InferenceError('an image argument is empty; name image files or folders.')
    if not os.path.isdir(argument):
      paths.append(argument)
      continue
    found = []
    for root, folders, files in os.walk(argument, onerror=_raise):
      folders.sort()
      found += [os.path.join(root, name) for name in files
                if os.path.splitext(name)[1].lower() in extensions]
    if not found:
      raise InferenceError(f'folder {argument} holds no image files (of the extensions PIL '
                           'reads).')
    paths += sorted(found, key=lambda path: os.path.relpath(path, argument).split(os.sep))
  return paths


def _raise(error):
  raise error
