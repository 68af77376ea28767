"""A trained model as a file that runs without this library: a serialized `jax.export.Exported`
of the inference function (weights baked in, any batch size), and a JSON beside it.

    python -m jax_resnet.export --model resnet50 --weights resnet50.safetensors \
        --tag resnet50.tv2_in1k --image-size 224 --out resnet50.jaxexport [--with-preprocessing]

    exported = jax.export.deserialize(bytearray(open('resnet50.jaxexport', 'rb').read()))
    logits = exported.call(images)        # (N, 224, 224, 3) float32, any N

docs/export.md says how to serve it and what it cannot do.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import export as jax_export  # a submodule jax 0.7 does not import itself
import numpy as np

from jax_resnet import predict

DTYPES = ('float32', 'bfloat16', 'float16')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
METADATA_SUFFIX = '.json'


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """What `predict.preprocess` does to an image, as fields (a weight tag's, or torchvision
  V1's): shorter side to `resize` (`interpolation`, antialiased), centre crop `crop`, scale
  to [0, 1], normalise by `mean` and `std`."""
  resize: int = predict.RESIZE
  crop: int = predict.CROP
  interpolation: str = 'bilinear'
  mean: Tuple[float, float, float] = tuple(float(v) for v in predict.IMAGENET_MEAN)
  std: Tuple[float, float, float] = tuple(float(v) for v in predict.IMAGENET_STD)


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
  new_width, new_height = predict.resized_size(width, height, preprocessing.resize)
  top, left = predict.crop_offsets(new_width, new_height, preprocessing.crop)
  crop = preprocessing.crop
  interpolation = preprocessing.interpolation
  columns = _fixed_point(resampling_matrix(width, new_width, interpolation)[left:left + crop])
  rows = _fixed_point(resampling_matrix(height, new_height, interpolation)[top:top + crop])
  mean = np.float32(preprocessing.mean)
  std = np.float32(preprocessing.std)

  def apply(images):
    pixels = jnp.asarray(images, jnp.int32)
    pixels = _resample_8_bits(pixels, columns, 'nhwc,vw->nhvc')
    pixels = _resample_8_bits(pixels, rows, 'nhwc,uh->nuwc')
    return (jnp.asarray(pixels, jnp.float32) / np.float32(255.0) - mean) / std

  return apply


def export_model(model, variables, image_size: int, dtype: Optional[str] = None,
                 preprocessing: Optional[Preprocessing] = None,
                 platforms: Optional[Sequence[str]] = None) -> jax_export.Exported:
  """`jax.export` of `model.apply(variables, images, train=False)` with the variables baked
  in and a symbolic batch size. Inputs: (N, image_size, image_size, 3) float32, or uint8
  images of that size when `preprocessing` is given (it runs first, inside the program).
  Output: float32 logits (or pooled features when the model has no head). `dtype` is the
  compute dtype ('bfloat16': the model runs as `create_model(..., dtype='bfloat16')`).
  `platforms`: those to lower for (default: this process's backend); a program lowered for
  several runs on each of them. `.serialize()` gives the bytes to write."""
  if dtype is not None:
    model = model.clone(dtype=jnp.dtype(dtype))
  constants = jax.tree.map(jnp.asarray, variables)
  prepare = None
  if preprocessing is not None:
    prepare = preprocessing_function(preprocessing, image_size, image_size)

  def infer(images):
    x = images if prepare is None else prepare(images)
    return jnp.asarray(model.apply(constants, x, train=False), jnp.float32)

  batch, = jax_export.symbolic_shape('batch')
  input_dtype = jnp.float32 if preprocessing is None else jnp.uint8
  spec = jax.ShapeDtypeStruct((batch, image_size, image_size, 3), input_dtype)
  platforms = tuple(platforms) if platforms else None
  return jax_export.export(jax.jit(infer), platforms=platforms)(spec)


def metadata(exported: jax_export.Exported, model_name: str, tag: Optional[str],
             image_size: int, dtype: str, preprocessing: Optional[Preprocessing],
             mean, std, class_names) -> dict:
  """The JSON written beside the program: what it takes and gives."""
  input_shape = [None] + [int(d) for d in exported.in_avals[0].shape[1:]]
  return {
      'model': model_name, 'tag': tag, 'image_size': image_size,
      'input_shape': input_shape, 'input_dtype': str(exported.in_avals[0].dtype),
      'output_shape': [None] + [int(d) for d in exported.out_avals[0].shape[1:]],
      'compute_dtype': dtype, 'with_preprocessing': preprocessing is not None,
      'preprocessing': None if preprocessing is None else dataclasses.asdict(preprocessing),
      'mean': list(mean), 'std': list(std), 'class_names': class_names,
      'platforms': list(exported.platforms),
      'calling_convention_version': exported.calling_convention_version,
      'jax_version': jax.__version__,
  }


def write_artefact(path: str, exported: jax_export.Exported, meta: dict) -> Tuple[str, str]:
  """Writes the serialized program to `path` and the JSON to `path` + '.json', each through
  a temporary file renamed into place, so a failure leaves neither half-written."""
  data = bytes(exported.serialize())
  written = []
  try:
    for target, payload in ((path, data),
                            (path + METADATA_SUFFIX, json.dumps(meta, indent=2).encode())):
      folder = os.path.dirname(os.path.abspath(target))
      with tempfile.NamedTemporaryFile(dir=folder, delete=False) as f:
        f.write(payload)
      os.replace(f.name, target)
      written.append(target)
  except BaseException:
    for target in written:
      os.remove(target)
    raise
  return path, path + METADATA_SUFFIX


def _parser(prog='python -m jax_resnet.export'):
  parser = argparse.ArgumentParser(
      prog=prog, description=__doc__.strip().splitlines()[0],
      epilog='example:\n  jax-resnet export --tag resnet50.tv2_in1k --image-size 224 '
             '--out resnet50.jaxexport --with-preprocessing',
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model', default=None,
                      help="registered model name; by default the weight tag's or the workdir's")
  parser.add_argument('--weights', default=None,
                      help='.safetensors, .pth/.pt/.bin, .npz or a train.py workdir; without '
                           'it, the published file of --tag (jax_resnet.load_pretrained)')
  parser.add_argument('--tag', default=None,
                      help="the weights' tag (jax_resnet.weights.list_tags()): its mean/std and, "
                           'with --with-preprocessing, its resize and crop; by default the tag '
                           'recorded in the file')
  parser.add_argument('--image-size', type=int, required=True,
                      help='input side; with --with-preprocessing the uint8 image side (the '
                           "model then runs at the tag's crop)")
  parser.add_argument('--out', required=True, help='program file to write (JSON beside it)')
  parser.add_argument('--dtype', default='float32', help=f'compute dtype: {", ".join(DTYPES)}')
  parser.add_argument('--with-preprocessing', action='store_true',
                      help="bake the tag's resize, crop and normalisation in: uint8 input")
  parser.add_argument('--format', choices=('jax', 'onnx'), default='jax',
                      help="'jax': a serialized jax.export program (default); 'onnx': an ONNX "
                           "file (jax_resnet.onnx_export; extra [onnx])")
  parser.add_argument('--platforms', default=None,
                      help=f'comma-separated, of {", ".join(PLATFORMS)} (default: this '
                           "machine's backend)")
  return parser


def _check_arguments(args, info):
  from jax_resnet.errors import UserError
  if info.input_kind != 'image':
    raise UserError(f'{args.model} takes video clips; export takes image models.')
  if args.dtype not in DTYPES:
    raise UserError(f'--dtype must be one of {", ".join(DTYPES)}, got {args.dtype!r}.')
  platforms = None
  if args.platforms is not None:
    platforms = tuple(p.strip() for p in args.platforms.split(',') if p.strip())
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms or len(set(platforms)) != len(platforms):
      raise UserError(f'--platforms takes distinct names from {", ".join(PLATFORMS)}, '
                      f'got {args.platforms!r}.')
  smallest = 1 if args.with_preprocessing else info.min_input_size
  if args.image_size < smallest:
    raise UserError(f'--image-size must be at least {smallest} for {args.model}, got '
                    f'{args.image_size}.')
  if os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
    raise UserError(f'--out {args.out}: not a file path in an existing directory.')
  return platforms


def _preprocessing(args, weights, info):
  """The tag (from --tag or the file) and the Preprocessing of predict's rules."""
  from jax_resnet.errors import UserError
  args.resize = None  # predict's option; export takes the tag's
  transform = predict._transform(args, weights, info.input_size)
  preprocessing = Preprocessing(**{**dataclasses.asdict(Preprocessing()), **transform})
  tag = args.tag or weights.read_tag(args.weights)
  if args.with_preprocessing:
    if preprocessing.crop < info.min_input_size:
      raise UserError(f"the crop {preprocessing.crop} is below {args.model}'s smallest input "
                      f'{info.min_input_size}.')
    if tag is None and info.input_size != predict.CROP:
      raise UserError(f'{args.model} takes {info.input_size}x{info.input_size} images and has '
                      "no weight tag: --with-preprocessing needs the tag's transform; pass "
                      '--tag or preprocess outside the program.')
  return tag, preprocessing


def main(argv=None, prog='python -m jax_resnet.export') -> int:
  args = _parser(prog).parse_args(argv)
  import jax_resnet
  from jax_resnet import weights
  from jax_resnet.errors import UserError
  from jax_resnet.weights.pretrained import pretrained_variables
  try:
    if args.weights is None and not args.tag:
      raise UserError('pass --weights FILE, or --tag TAG to bake in a published file.')
    published = pretrained_variables(args.tag) if args.weights is None else None
    if published and args.model not in (None, published[0]):
      raise UserError(f'{args.tag} holds {published[0]} weights, not {args.model}; pass '
                      f'--model {published[0]} or leave --model out.')
    args.model = args.model or (published[0] if published else None)
    args.model = predict.model_name(args, weights)
    info = jax_resnet.model_info(args.model)
    platforms = _check_arguments(args, info)
    if args.format == 'onnx':
      from jax_resnet import onnx_export
      onnx_export.check_arguments(args)
    tag, preprocessing = _preprocessing(args, weights, info)
    variables = published[1] if published else weights.load(args.model, args.weights)
  except (UserError, ValueError, OSError) as error:
    print(f'export: error: {error}', file=sys.stderr)
    return 2
  num_classes = weights.trees.head_classes_of(variables)
  model = jax_resnet.create_model(args.model, num_classes=num_classes)
  if args.format == 'onnx':
    return onnx_export.write_from_arguments(
        args, model, variables, preprocessing if args.with_preprocessing else None)
  exported = export_model(model, variables, args.image_size, args.dtype,
                          preprocessing if args.with_preprocessing else None, platforms)
  class_names = weights.imagenet_classes() if num_classes == 1000 else None
  meta = metadata(exported, args.model, tag, args.image_size, args.dtype,
                  preprocessing if args.with_preprocessing else None, preprocessing.mean,
                  preprocessing.std, class_names)
  program, description = write_artefact(args.out, exported, meta)
  print(f'wrote {program} ({os.path.getsize(program)} bytes; platforms '
        f'{", ".join(exported.platforms)}) and {description}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
