"""Classify images with pretrained weights and the preprocessing they were published with.

    jax-resnet predict --tag resnet50d.ra2_in1k cat.jpg           # published file, fetched, cached
    jax-resnet predict --model resnet50 --weights resnet50.safetensors cat.jpg dog.jpg
    jax-resnet predict --weights model.safetensors --tag resnet50d.ra2_in1k cat.jpg
    jax-resnet predict --weights runs/cifar10_resnet20 cat.png    # a training workdir

prints, per image, the top-5 classes with their softmax probabilities (`python -m
jax_resnet.predict` is the same program). The model comes from --model, else the weight tag
(--tag, or the one an .npz records), else the workdir's config.json. Images are fed at the tag's
crop, the workdir's image_size, or the model's own input size (jax_resnet.model_info: 224 for
ImageNet models, resized to 256 first; 32 for the CIFAR ones, resized to 32).
"""

import argparse
import json
import os
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


# Modes whose pixels are not 8 bits and how each maps to [0, 1]: convert('RGB') would clip them
# at 255 (a 16-bit image turns white, a [0, 1] float image black).
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')


def unit_grey(image):
  """None for 8-bit modes (convert('RGB') is exact); else the grey plane as a PIL 'F' image in
  [0, 1]: 16-bit modes divided by 65535, 32-bit integers ('I') likewise when they lie in
  [0, 65535] (PIL reads 16-bit files as 'I' too), floats ('F') taken as [0, 1]. Values outside
  the mode's range raise ValueError: no scale would be right for them."""
  from PIL import Image
  if image.mode not in SIXTEEN_BIT_MODES + ('I', 'F'):
    return None
  values = np.asarray(image, np.float64)
  low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
  if image.mode == 'F':
    if not (np.isfinite(low) and np.isfinite(high) and 0.0 <= low and high <= 1.0):
      raise ValueError(f'its float pixels span {low:g}..{high:g}; float images are read as '
                       'brightness in [0, 1]: rescale it to [0, 1] or save it in 8 or 16 bits')
    scale = 1.0
  else:
    if low < 0 or high > 65535:
      raise ValueError(f'its {image.mode} integer pixels span {low:g}..{high:g}, beyond 16 '
                       'bits, so no brightness scale is known: save it in 8 or 16 bits')
    scale = 65535.0
  return Image.fromarray((values / scale).astype(np.float32))


def read_image(path: str, resize: int = RESIZE, **transform) -> np.ndarray:
  """`preprocess` of the image file at `path` (transform: preprocess's other arguments)."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:  # reads the header only
      _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
      return preprocess(image, resize, **transform)
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


def classify(model_name: str, variables, images: np.ndarray, **options) -> np.ndarray:
  """Softmax probabilities (N, classes) for preprocessed (N, H, W, 3) images, H = W = the
  model's `jax_resnet.model_info(model_name).input_size` (224 for ImageNet). Runs op by op
  (no jit): for a handful of images that is faster than compiling the whole network.
  options: create_model's, those the weights need (`Pretrained.options`)."""
  import jax_resnet
  num_classes = int(variables['params']['head']['kernel'].shape[-1])
  model = jax_resnet.create_model(model_name, num_classes=num_classes, **options)
  logits = model.apply(variables, images, train=False)
  return np.asarray(jax.nn.softmax(logits, axis=-1))


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
  """The module's usage text as written, each option with its default."""


def _parser(prog='python -m jax_resnet.predict'):
  parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_HelpFormatter)
  parser.add_argument('--model', default=None,
                      help='registered model name; by default the weight tag\'s model or the '
                           "workdir's")
  parser.add_argument('--weights', default=None,
                      help='.safetensors, .pth/.pt/.bin, .npz or a train.py workdir; without '
                           'it, the published file of --tag (jax_resnet.load_pretrained)')
  parser.add_argument('--top', type=int, default=5, help='classes to print per image')
  parser.add_argument('--tag', default=None,
                      help="the weights' tag (e.g. resnet50.tv2_in1k, jax_resnet.weights."
                           'list_tags(), or hf-hub:<owner>/<repo>): its resize, crop, '
                           'interpolation, mean and std, and its file when --weights is not '
                           'given; by default the tag recorded in the file, else torchvision V1')
  parser.add_argument('--resize', type=int, default=None,
                      help='shorter side before the centre crop (overrides the tag; 256 without '
                           'one)')
  parser.add_argument('images', nargs='+', help='image files (any format PIL reads)')
  return parser


def format_predictions(path: str, predictions, class_names) -> str:
  lines = [path]
  for index, probability in predictions:
    name = class_names[index] if index < len(class_names) else f'class {index}'
    lines.append(f'  {probability:.4f}  {name} ({index})')
  return '\n'.join(lines)


def _workdir_config(path: str) -> dict:
  """The config.json of a training workdir at `path`, else {}."""
  if not path:
    return {}
  config_path = os.path.join(path, 'config.json')
  if not os.path.isfile(config_path):
    return {}
  with open(config_path) as f:
    return json.load(f)


def load_weights(args, weights):
  """The `weights.loader.Pretrained` of --weights (a file or workdir) or, without it, of --tag
  (the published file), through the one loader. The model is --model, else the weight tag's
  (--tag, or the one an .npz records), else what the loader works out from the source."""
  from jax_resnet.errors import UserError
  from jax_resnet.weights import loader
  hint = args.model
  tag = args.tag or (weights.read_tag(args.weights) if args.weights else None)
  if hint is None and tag and args.weights is not None:
    hint = loader.model_of_tag(tag)
  try:
    return loader.read_pretrained(args.weights if args.weights is not None else args.tag, hint)
  except loader.ModelNotKnownError as error:
    raise UserError(f'{args.weights} does not say which model it holds ({error.reason}); '
                    'pass --model NAME (a name from jax_resnet.list_models()).') from None


def _transform(args, weights, input_size: int = CROP) -> dict:
  """read_image's arguments: from --tag (an hf-hub: repository's preprocessor_config.json or
  timm pretrained_cfg), else the tag the file records, else the workdir's image_size or the
  model's input_size (torchvision V1's resize to 256 and crop for 224); --resize overrides the
  tag's."""
  from jax_resnet.errors import UserError
  from jax_resnet.weights.pretrained import HUB_PREFIX, hub_tag, resolve_tag
  name = args.tag or weights.read_tag(args.weights)
  crop = _workdir_config(args.weights).get('image_size') or input_size
  transform = dict(resize=RESIZE if crop == CROP else crop, crop=crop)
  # An hf-hub: repository's preprocessing is the one its files record (`hub_tag`).
  tag = (hub_tag if name.startswith(HUB_PREFIX) else resolve_tag)(name) if name else None
  if tag:
    if tag.model != args.model:
      raise UserError(f'weight tag {name} is for {tag.model}, not {args.model}; pass '
                      f'--model {tag.model} or another --tag.')
    transform = dict(resize=tag.resize, crop=tag.crop, interpolation=tag.interpolation,
                     mean=tag.mean, std=tag.std)
  if args.resize is not None:
    transform['resize'] = args.resize
  return transform


def main(argv=None, prog='python -m jax_resnet.predict') -> int:
  args = _parser(prog).parse_args(argv)
  import jax_resnet
  from jax_resnet import weights
  from jax_resnet.errors import UserError
  try:
    if args.weights is None and not args.tag:
      raise UserError('pass --weights FILE, or --tag TAG to use a published file.')
    found = None  # the one loader (tag, file or workdir), after the arguments' own checks
    if args.model is None:
      found = load_weights(args, weights)
      args.model = found.model
    info = jax_resnet.model_info(args.model)
    if info.input_kind == 'video':
      raise UserError(f'{args.model} classifies video clips; this tool classifies images.')
    transform = _transform(args, weights, info.input_size)
    if args.top < 1 or transform['resize'] < transform['crop']:
      raise UserError(f'--top must be >= 1 and --resize >= the crop ({transform["crop"]}).')
    images = np.stack([read_image(path, **transform) for path in args.images])
    found = found or load_weights(args, weights)
    variables = found.variables
    if 'head' not in variables['params']:
      raise UserError(f'{args.weights or args.tag} has no classifier head; it cannot predict '
                      'classes.')
  except (ImageError, UserError, ValueError) as error:
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  probabilities = classify(args.model, variables, images, **found.options)
  num_classes = probabilities.shape[-1]
  class_names = list(found.class_names or ()) or (
      weights.imagenet_classes() if num_classes == 1000 else [])
  for path, row in zip(args.images, probabilities):
    print(format_predictions(path, top_k(row, args.top), class_names))
  return 0


if __name__ == '__main__':
  sys.exit(main())
