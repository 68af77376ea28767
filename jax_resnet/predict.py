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

The work is the inference layer's (`jax_resnet.inference`); this module is its command line.
"""

import argparse
import sys

from jax_resnet.errors import UserError
# The inference layer's names, as this module has always offered them.
from jax_resnet.inference import (CROP, IMAGENET_MEAN, IMAGENET_STD, RESIZE,  # noqa: F401
                                  ImageError, class_names_of, classify, crop_offsets,
                                  is_workdir, preprocess, read_image, resized_size, top_k)
from jax_resnet.inference import images as _images
from jax_resnet import inference

_check_pixels = _images._check_pixels  # tests/test_weights.py reaches it here
MAX_RESIZE = 4096           # --resize's bound: a 4096-pixel shorter side is a 48 MB RGB image
MAX_BATCH = 1024            # --batch-size's bound
DEFAULT_BATCH = 32


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


def load_weights(args, weights=None):
  """`inference.read_weights` of --weights, --tag and --model (`weights`: unused, kept for
  the callers that pass the jax_resnet.weights module)."""
  return inference.read_weights(args.weights, args.tag, args.model)


def _transform(args, weights=None, input_size: int = CROP) -> dict:
  """read_image's arguments for --model, --weights, --tag and --resize
  (`inference.tag_transform`; `weights`: unused, as in `load_weights`)."""
  return inference.tag_transform(args.model, args.weights, args.tag, input_size, args.resize)


def _check_sizes(args):
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


def _setup(args):
  """(image paths, the Classifier): every check before the first batch is decoded; the
  images' headers before the weights are read, as the images' errors are the likelier."""
  planned = inference.plan(args.weights, args.tag, args.model, args.resize,
                           args.exif_transpose)
  paths = inference.image_paths(args.images)
  inference.check_images(paths)
  return paths, inference.classifier_of(planned, args.weights, args.tag)


def _os_error_line(error: OSError) -> str:
  where = f' {error.filename}' if error.filename else ''
  return f'cannot read{where}: {error.strerror or error}'


def run_batches(args, classifier: inference.Classifier, paths):
  """Classifies `paths` in batches of args.batch_size, printing each batch's results as it
  ends; a progress bar on stderr."""
  from tqdm import tqdm
  with tqdm(total=len(paths), file=sys.stderr, unit='image', desc='predict') as bar:
    for results in classifier.classify_files(paths, args.batch_size, args.top):
      for path, predictions in results:
        tqdm.write(format_predictions(path, predictions, classifier.class_names),
                   file=sys.stdout)
      sys.stdout.flush()
      bar.update(len(results))


def main(argv=None, prog='python -m jax_resnet.predict') -> int:
  args = _parser(prog).parse_args(argv)
  try:
    _check_sizes(args)
    paths, classifier = _setup(args)
  except UserError as error:
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  except OSError as error:
    print(f'predict: error: {_os_error_line(error)}', file=sys.stderr)
    return 2
  try:
    run_batches(args, classifier, paths)
  except ImageError as error:  # a file whose header read but whose pixels do not decode
    print(f'predict: error: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
