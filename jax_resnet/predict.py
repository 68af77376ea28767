"""Classify images with pretrained weights and the preprocessing they were published with.

    jax-resnet predict --tag resnet50d.ra2_in1k cat.jpg           # published file, fetched, cached
    jax-resnet predict --model resnet50 --weights resnet50.safetensors cat.jpg dog.jpg
    jax-resnet predict --weights model.safetensors --tag resnet50d.ra2_in1k cat.jpg
    jax-resnet predict --weights runs/cifar10_resnet20 cat.png    # a training workdir

    jax-resnet predict --weights runs/finetune --batch-size 64 photos/   # a folder, recursively

prints, per image, the top-5 classes with their softmax probabilities (`python -m
jax_resnet.predict` is the same program), batch by batch as each completes, with a progress bar
on stderr. The model comes from --model, else the weight tag (--tag, or the one an .npz
records), else the workdir's config.json. Images are fed as the tag was published (its resize,
crop, interpolation, mean and std), or, for a workdir, exactly as its run evaluated them (its
eval_preprocessing.json: image size, crop, normalisation, the per-pixel mean image), or at the
model's own input size (jax_resnet.model_info: 224 for ImageNet models, resized to 256 first;
32 for the CIFAR ones, resized to 32) with ImageNet's mean and std.

EXIF orientation is not applied by default, as torchvision's ImageFolder and `decode_image`
(apply_exif_orientation=False), timm's datasets and the trainer's pipeline read images: the
pixels as stored. --exif-transpose turns a photo upright first (PIL's ImageOps.exif_transpose,
what image viewers show).
"""

import argparse
import functools
import json
import os
import sys

import jax
import numpy as np

from jax_resnet.data import transforms
from jax_resnet.data.pixels import SIXTEEN_BIT_MODES, unit_grey  # noqa: F401 (public here)

# float32 as torchvision's Normalize computes: preprocess matches it bit for bit.
IMAGENET_MEAN = np.float32(transforms.IMAGENET_MEAN)
IMAGENET_STD = np.float32(transforms.IMAGENET_STD)
RESIZE, CROP = 256, 224
MAX_RESIZE = 4096           # --resize's bound: a 4096-pixel shorter side is a 48 MB RGB image
MAX_RESIZED_PIXELS = 1 << 26  # one resized image at most (64 M pixels, 192 MB in 8 bits)
MAX_BATCH = 1024            # --batch-size's bound
DEFAULT_BATCH = 32


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


def _read(path: str, convert, exif_transpose: bool = False) -> np.ndarray:
  """convert(PIL image) of the image file at `path`; every failure an ImageError naming it."""
  from PIL import Image, ImageOps, UnidentifiedImageError
  try:
    with Image.open(path) as image:  # reads the header only
      _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
      return convert(ImageOps.exif_transpose(image) if exif_transpose else image)
  except Image.DecompressionBombError as error:  # PIL's own refusal, at twice its limit
    raise ImageError(f'cannot read image {path}: {str(error).splitlines()[0]}') from None
  except (OSError, UnidentifiedImageError, ValueError) as error:
    reason = getattr(error, 'strerror', None) or str(error).splitlines()[0]
    raise ImageError(f'cannot read image {path}: {reason}') from None


def check_image(path: str):
  """Opens the image file at `path` and checks its header (format, declared size), decoding
  only wide-mode pixels (their range): every input is checked before the first batch runs."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as image:
      _check_pixels(path, image.width, image.height, Image.MAX_IMAGE_PIXELS)
      if image.mode in SIXTEEN_BIT_MODES + ('I', 'F'):
        unit_grey(image)  # the range check of wide modes (it decodes: such files are rare)
  except Image.DecompressionBombError as error:  # PIL's own refusal, at twice its limit
    raise ImageError(f'cannot read image {path}: {str(error).splitlines()[0]}') from None
  except (OSError, UnidentifiedImageError, ValueError) as error:
    reason = getattr(error, 'strerror', None) or str(error).splitlines()[0]
    raise ImageError(f'cannot read image {path}: {reason}') from None


def image_paths(arguments) -> list:
  """The image files named: a file as given; a folder, every file under it whose extension
  PIL reads, recursively, in sorted order (sub-folders in their sorted place)."""
  from PIL import Image
  from jax_resnet.errors import UserError
  extensions = set(Image.registered_extensions())
  paths = []
  for argument in arguments:
    if not argument:
      raise UserError('an image argument is empty; name image files or folders.')
    if not os.path.isdir(argument):
      paths.append(argument)
      continue
    found = []
    for root, folders, files in os.walk(argument, onerror=_raise):
      folders.sort()
      found += [os.path.join(root, name) for name in files
                if os.path.splitext(name)[1].lower() in extensions]
    if not found:
      raise UserError(f'folder {argument} holds no image files (of the extensions PIL reads).')
    paths += sorted(found, key=lambda path: os.path.relpath(path, argument).split(os.sep))
  return paths


def _raise(error):
  raise error


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
  parser.add_argument('--batch-size', type=int, default=DEFAULT_BATCH,
                      help=f'images per batch (1..{MAX_BATCH}); results print as each ends')
  parser.add_argument('--exif-transpose', action='store_true',
                      help="turn each image upright by its EXIF orientation first (off: the "
                           'stored pixels, as torchvision, timm and the trainer read them)')
  parser.add_argument('images', nargs='+',
                      help='image files (any format PIL reads) or folders of them (recursive, '
                           'sorted)')
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


def _check_sizes(args):
  from jax_resnet.errors import UserError
  if args.top < 1:
    raise UserError(f'--top must be >= 1, got {args.top}.')
  if not 1 <= args.batch_size <= MAX_BATCH:
    raise UserError(f'--batch-size must be in [1, {MAX_BATCH}], got {args.batch_size}.')
  if args.resize is not None and not 1 <= args.resize <= MAX_RESIZE:
    raise UserError(f'--resize must be in [1, {MAX_RESIZE}] (a shorter side in pixels), got '
                    f'{args.resize}.')
  for option in ('weights', 'tag', 'model'):
    if getattr(args, option) == '':
      raise UserError(f'--{option} is empty; name one or leave the option out.')


def is_workdir(path) -> bool:
  """Whether `path` is a trainer workdir (a folder with config.json or the eval record);
  OSError when it is a folder that cannot be read."""
  from jax_resnet.data import eval_record
  if not path or not os.path.isdir(path):
    return False
  os.listdir(path)  # a folder that cannot be read fails here, with its errno and name
  return any(os.path.isfile(os.path.join(path, name))
             for name in ('config.json', eval_record.RECORD_FILE))


def workdir_transform(args):
  """(prepare, record) for a workdir: its eval transform (jax_resnet.config.eval_preprocessing);
  --tag and --resize, which would feed it otherwise, are refused."""
  from jax_resnet.config import eval_preprocessing
  from jax_resnet.errors import UserError
  if args.tag or args.resize is not None:
    raise UserError(f'{args.weights} is a training workdir: its images are fed as its run '
                    'evaluated them (eval_preprocessing.json); leave out --tag and --resize.')
  record = eval_preprocessing(args.weights)
  return functools.partial(read_image_as_trained, record=record,
                           exif_transpose=args.exif_transpose), record


def class_names_of(workdir, num_classes: int) -> list:
  """The workdir's class_names.json (a JSON list of strings, one per class) when present."""
  from jax_resnet.errors import UserError
  path = os.path.join(workdir, 'class_names.json') if workdir else None
  if not path or not os.path.isfile(path):
    return []
  try:
    with open(path) as f:
      names = json.load(f)
  except (OSError, ValueError) as error:
    raise UserError(f'cannot read {path}: {getattr(error, "strerror", None) or error}.') \
        from None
  if (not isinstance(names, list) or len(names) != num_classes
      or not all(isinstance(name, str) for name in names)):
    raise UserError(f'{path} is not a list of {num_classes} class names (strings), one per '
                    'class of the head; restore it from the run.')
  return names


def _setup(args, weights):
  """(image paths, variables, prepare: path -> array, class names), args.model set: every
  check before the first batch is decoded."""
  import jax_resnet
  from jax_resnet.errors import UserError
  if args.weights is None and not args.tag:
    raise UserError('pass --weights FILE, or --tag TAG to use a published file.')
  workdir = args.weights if is_workdir(args.weights) else None
  found = None  # the one loader (tag, file or workdir), after the arguments' own checks
  if args.model is None:
    found = load_weights(args, weights)
    args.model = found.model
  info = jax_resnet.model_info(args.model)
  if info.input_kind == 'video':
    raise UserError(f'{args.model} classifies video clips; this tool classifies images.')
  if workdir:
    prepare, _ = workdir_transform(args)
  else:
    transform = _transform(args, weights, info.input_size)
    if transform['resize'] < transform['crop']:
      raise UserError(f'--resize must be >= the crop ({transform["crop"]}).')
    prepare = functools.partial(read_image, exif_transpose=args.exif_transpose, **transform)
  paths = image_paths(args.images)
  for path in paths:  # before the weights are read, as the images' errors are the likelier
    check_image(path)
  found = found or load_weights(args, weights)
  variables = found.variables
  if 'head' not in variables['params']:
    raise UserError(f'{args.weights or args.tag} has no classifier head; it cannot predict '
                    'classes.')
  num_classes = int(variables['params']['head']['kernel'].shape[-1])
  class_names = (class_names_of(workdir, num_classes) or list(found.class_names or ())
                 or (weights.imagenet_classes() if num_classes == 1000 else []))
  return paths, variables, prepare, class_names, found.options


def _os_error_line(error: OSError) -> str:
  where = f' {error.filename}' if error.filename else ''
  return f'cannot read{where}: {error.strerror or error}'


def run_batches(args, variables, prepare, paths, class_names, options=None):
  """Classifies `paths` in batches of args.batch_size (the last one padded, so every batch
  has one shape), printing each batch's results as it ends; a progress bar on stderr.
  options: create_model's, those the weights need (`Pretrained.options`)."""
  from tqdm import tqdm
  with tqdm(total=len(paths), file=sys.stderr, unit='image', desc='predict') as bar:
    for start in range(0, len(paths), args.batch_size):
      batch = paths[start:start + args.batch_size]
      images = np.stack([prepare(path) for path in batch])
      padding = args.batch_size - len(batch)
      if padding:
        images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
      probabilities = classify(args.model, variables, images, **(options or {}))[:len(batch)]
      for path, row in zip(batch, probabilities):
        tqdm.write(format_predictions(path, top_k(row, args.top), class_names), file=sys.stdout)
      sys.stdout.flush()
      bar.update(len(batch))


def main(argv=None, prog='python -m jax_resnet.predict') -> int:
  args = _parser(prog).parse_args(argv)
  from jax_resnet import weights
  from jax_resnet.errors import UserError
  try:
    _check_sizes(args)
    paths, variables, prepare, class_names, options = _setup(args, weights)
  except (ImageError, UserError, ValueError) as error:
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  except OSError as error:
    print(f'predict: error: {_os_error_line(error)}', file=sys.stderr)
    return 2
  try:
    run_batches(args, variables, prepare, paths, class_names, options)
  except ImageError as error:  # a file whose header read but whose pixels do not decode
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
