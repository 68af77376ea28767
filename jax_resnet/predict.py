"""Classify images with pretrained weights, torchvision's ImageNet eval preprocessing.

    python -m jax_resnet.predict --model resnet50 --weights resnet50.safetensors cat.jpg dog.jpg

prints, per image, the top-5 classes with their softmax probabilities.
"""

import argparse
import sys

import jax
import numpy as np

from jax_resnet.data import transforms

# float32 as torchvision's Normalize computes: preprocess matches it bit for bit.
IMAGENET_MEAN = np.float32(transforms.IMAGENET_MEAN)
IMAGENET_STD = np.float32(transforms.IMAGENET_STD)
RESIZE, CROP = 256, 224


class ImageError(Exception):
  """An image that cannot be read; the message names the file."""


def resized_size(width: int, height: int, shorter: int = RESIZE):
  """torchvision Resize(int): the shorter side becomes `shorter`, the longer one is scaled and
  truncated to an int, as torchvision's `_compute_resized_output_size` does."""
  if width <= height:
    return shorter, int(shorter * height / width)
  return int(shorter * width / height), shorter


def preprocess(image, resize: int = RESIZE) -> np.ndarray:
  """PIL image -> (224, 224, 3) float32: Resize(resize, bilinear), CenterCrop(224), ToTensor,
  Normalize(ImageNet mean/std) as torchvision's ImageNet eval transform, channels last.
  torchvision's IMAGENET1K_V2 weights were evaluated with resize=232."""
  from PIL import Image
  image = image.convert('RGB')
  image = image.resize(resized_size(*image.size, shorter=resize), Image.BILINEAR)
  width, height = image.size
  top, left = int(round((height - CROP) / 2.0)), int(round((width - CROP) / 2.0))
  image = image.crop((left, top, left + CROP, top + CROP))
  pixels = np.asarray(image, np.float32) / 255.0
  return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def read_image(path: str, resize: int = RESIZE) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:  # reads the header only
      _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
      return preprocess(image, resize)
  except Image.DecompressionBombError as error:  # PIL's own refusal, at twice its limit
    raise ImageError(f'cannot read image {path}: {str(error).splitlines()[0]}') from None
  except (OSError, UnidentifiedImageError, ValueError) as error:
    reason = getattr(error, 'strerror', None) or str(error).splitlines()[0]
    raise ImageError(f'cannot read image {path}: {reason}') from None


def _check_pixels(path: str, width: int, height: int, limit: int):
  """Refuses an image before decoding when its header declares more pixels than PIL's limit:
  decoding it would take gigabytes to classify a 224x224 crop."""
  if limit and width * height > limit:
    raise ImageError(f'cannot read image {path}: it declares {width}x{height} pixels, more than '
                     f'the {limit} PIL allows (PIL.Image.MAX_IMAGE_PIXELS); resize it first.')


def top_k(probabilities: np.ndarray, k: int):
  """[(class index, probability)] in decreasing probability (ties: lower index first)."""
  order = np.argsort(-probabilities, kind='stable')[:k]
  return [(int(i), float(probabilities[i])) for i in order]


def classify(model_name: str, variables, images: np.ndarray) -> np.ndarray:
  """Softmax probabilities (N, classes) for preprocessed (N, H, W, 3) images, H = W = the
  model's `jax_resnet.model_info(model_name).input_size` (224 for ImageNet). Runs op by op
  (no jit): for a handful of images that is faster than compiling the whole network."""
  import jax_resnet
  num_classes = int(variables['params']['head']['kernel'].shape[-1])
  model = jax_resnet.create_model(model_name, num_classes=num_classes)
  logits = model.apply(variables, images, train=False)
  return np.asarray(jax.nn.softmax(logits, axis=-1))


def _parser():
  parser = argparse.ArgumentParser(
      prog='python -m jax_resnet.predict', description=__doc__.strip().splitlines()[0])
  parser.add_argument('--model', default='resnet50', help='registered model name')
  parser.add_argument('--weights', required=True,
                      help='.safetensors, .pth/.pt/.bin, .npz or a train.py workdir')
  parser.add_argument('--top', type=int, default=5, help='classes to print per image')
  parser.add_argument('--resize', type=int, default=RESIZE,
                      help='shorter side before the 224 centre crop (232 for torchvision V2)')
  parser.add_argument('images', nargs='+', help='image files (any format PIL reads)')
  return parser


def format_predictions(path: str, predictions, class_names) -> str:
  lines = [path]
  for index, probability in predictions:
    name = class_names[index] if index < len(class_names) else f'class {index}'
    lines.append(f'  {probability:.4f}  {name} ({index})')
  return '\n'.join(lines)


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  import jax_resnet
  from jax_resnet import weights
  from jax_resnet.errors import UserError
  try:
    info = jax_resnet.model_info(args.model)
    if info.input_kind == 'video':
      raise UserError(f'{args.model} classifies video clips; this tool classifies images.')
    if info.input_size != CROP:
      raise UserError(f'{args.model} takes {info.input_size}x{info.input_size} images; this tool '
                      f'preprocesses for {CROP}x{CROP} (ImageNet) models: preprocess to '
                      f'{info.input_size}x{info.input_size} yourself and call '
                      'jax_resnet.predict.classify.')
    if args.top < 1 or args.resize < CROP:
      raise UserError(f'--top must be >= 1 and --resize >= {CROP}.')
    images = np.stack([read_image(path, args.resize) for path in args.images])
    variables = weights.load(args.model, args.weights)
    if 'head' not in variables['params']:
      raise UserError(f'{args.weights} has no classifier head; it cannot predict classes.')
  except (ImageError, UserError, ValueError) as error:
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  probabilities = classify(args.model, variables, images)
  num_classes = probabilities.shape[-1]
  class_names = weights.imagenet_classes() if num_classes == 1000 else []
  for path, row in zip(args.images, probabilities):
    print(format_predictions(path, top_k(row, args.top), class_names))
  return 0


if __name__ == '__main__':
  sys.exit(main())
