"""A trained model as a file that runs without this library: a serialized `jax.export.Exported`
of the inference function (weights baked in, any batch size), and a JSON beside it.

    python -m jax_resnet.export --model resnet50 --weights resnet50.safetensors \
        --tag resnet50.tv2_in1k --image-size 224 --out resnet50.jaxexport [--with-preprocessing]

    exported, meta = jax_resnet.export.load_exported('resnet50.jaxexport')  # SHA-256 checked
    logits = exported.call(images)        # (N, 224, 224, 3) float32, any N

docs/export.md says how to serve it and what it cannot do.
"""

import argparse
import dataclasses
import errno
import hashlib
import json
import os
import secrets
import sys
import tempfile
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import export as jax_export  # a submodule jax 0.7 does not import itself
import numpy as np

from jax_resnet import predict
from jax_resnet.errors import UserError
from jax_resnet.utils import created_file_mode

DTYPES = ('float32', 'bfloat16', 'float16')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
METADATA_SUFFIX = '.json'


class ExportError(UserError):
  """A program that cannot be written, or a written one that fails its check on loading."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """What `predict.preprocess` does to an image, as fields (a weight tag's, torchvision
  V1's, or a trainer workdir's eval transform): shorter side to `resize` (`interpolation`,
  antialiased), centre crop `crop`, scale to [0, 1], subtract `mean_image` when set (a run
  with normalize='per_pixel_mean'; (crop, crop, 3)) else `mean`, divide by `std`."""
  resize: int = predict.RESIZE
  crop: int = predict.CROP
  interpolation: str = 'bilinear'
  mean: Tuple[float, float, float] = tuple(float(v) for v in predict.IMAGENET_MEAN)
  std: Tuple[float, float, float] = tuple(float(v) for v in predict.IMAGENET_STD)
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
  mean = preprocessing.subtracted
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
             mean, std, class_names, normalize: str = 'mean_std',
             eval_transform: Optional[dict] = None) -> dict:
  """The JSON written beside the program: what it takes and gives. `mean` is what a server
  subtracts from [0, 1] pixels before dividing by `std`: a per-channel list, or the mean
  image as nested (H, W, 3) lists for a run with normalize='per_pixel_mean' (the same
  broadcasting formula serves both); `eval_transform`: a workdir's resize/crop record."""
  input_shape = [None] + [int(d) for d in exported.in_avals[0].shape[1:]]
  return {
      'model': model_name, 'tag': tag, 'image_size': image_size,
      'input_shape': input_shape, 'input_dtype': str(exported.in_avals[0].dtype),
      'output_shape': [None] + [int(d) for d in exported.out_avals[0].shape[1:]],
      'compute_dtype': dtype, 'with_preprocessing': preprocessing is not None,
      'preprocessing': None if preprocessing is None else preprocessing.to_json(),
      'normalize': normalize, 'mean': np.asarray(mean, np.float32).tolist(),
      'std': np.asarray(std, np.float32).tolist(), 'eval_transform': eval_transform,
      'class_names': class_names, 'platforms': list(exported.platforms),
      'calling_convention_version': exported.calling_convention_version,
      'jax_version': jax.__version__,
  }


def _temporary(target: str, payload: bytes, mode: int) -> str:
  """`payload` in a fresh temporary beside `target` (mkstemp: O_EXCL, never through a link),
  synced, with `mode`; removed again if writing fails."""
  folder = os.path.dirname(os.path.abspath(target))
  descriptor, name = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(target)}.')
  try:
    with os.fdopen(descriptor, 'wb') as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(name, mode)
  except BaseException:
    os.remove(name)
    raise
  return name


def _keep_previous(path: str) -> Optional[str]:
  """A hard link to the program now at `path` (None if there is none or links fail), so a
  failed second rename can put it back."""
  if not os.path.isfile(path) or os.path.islink(path):
    return None
  backup = f'{path}.previous.{secrets.token_hex(4)}'
  try:
    os.link(path, backup)
  except OSError:
    return None
  return backup


def write_artefact(path: str, exported: jax_export.Exported, meta: dict) -> Tuple[str, str]:
  """Writes the serialized program to `path` and the JSON, with the program's SHA-256, to
  `path` + '.json', as a pair: both are written to temporaries first (a full disk fails there,
  leaving the previous pair as it was and no temporary), then renamed into place, the previous
  program put back if the JSON's rename fails. Files get the mode the umask gives. A storage
  failure is an ExportError."""
  data = bytes(exported.serialize())
  meta = {**meta, 'program_sha256': hashlib.sha256(data).hexdigest(),
          'program_bytes': len(data)}
  description = path + METADATA_SUFFIX
  mode = created_file_mode()
  temporaries, backup = [], None
  target = path
  try:
    temporaries.append(_temporary(path, data, mode))
    target = description
    temporaries.append(_temporary(description, (json.dumps(meta, indent=2) + '\n').encode(),
                                  mode))
    backup = _keep_previous(path)
    os.replace(temporaries[0], path)
    try:
      os.replace(temporaries[1], description)
    except OSError:
      if backup:
        os.replace(backup, path)
      raise
  except OSError as error:
    hint = {errno.ENOSPC: 'free space', errno.EDQUOT: 'free space (quota)'}.get(
        error.errno, 'choose a writable --out')
    raise ExportError(f'writing {target} failed ([Errno {error.errno}] {error.strerror}); '
                      f'{hint} and export again (the previous files, if any, are unchanged).') \
        from None
  finally:
    for name in temporaries + ([backup] if backup else []):
      if os.path.lexists(name):
        os.remove(name)
  return path, description


def load_exported(path: str):
  """(jax.export.Exported, its JSON as a dict) of a program this module wrote, after checking
  the program's bytes against the SHA-256 the JSON beside it records: an ExportError (one
  line) for a missing or unreadable file, a JSON without the digest, or any changed byte."""
  description = path + METADATA_SUFFIX
  try:
    with open(description, 'rb') as f:
      meta = json.loads(f.read())
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise ExportError(f'cannot read {error.filename}: {error.strerror}.') from None
  except ValueError as error:
    raise ExportError(f'{description} is not valid JSON ({error}): export again.') from None
  digest = meta.get('program_sha256') if isinstance(meta, dict) else None
  if not isinstance(digest, str):
    raise ExportError(f'{description} records no program_sha256 (written by an older '
                      'version), so the program cannot be checked: export it again.')
  if hashlib.sha256(data).hexdigest() != digest:
    raise ExportError(f'{path} does not match the SHA-256 recorded in {description} (changed '
                      'or damaged since it was written): export it again.')
  return jax_export.deserialize(bytearray(data)), meta


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
  if not args.out:
    raise UserError('--out is empty; name the program file to write.')
  if os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
    raise UserError(f'--out {args.out}: not a file path in an existing directory.')
  if os.path.isdir(args.out + METADATA_SUFFIX):
    raise UserError(f'--out {args.out}: {args.out}{METADATA_SUFFIX}, where its JSON goes, is a '
                    'directory.')
  return platforms


def workdir_preprocessing(args, record) -> Preprocessing:
  """The Preprocessing of a trainer workdir's eval transform (`record`: its
  data.eval_record.EvalPreprocessing), for the square (S, S) images the program takes: their
  resize to image_size is the eval pipeline's (a crop of the whole square). One line where
  the program cannot do what the run did."""
  size = record.image_size
  if args.with_preprocessing and record.crop_fraction != 1.0:
    raise UserError(f"{args.weights} evaluates a centre crop of {record.crop_fraction:g} of the "
                    'shorter side (augment=inception), which the program cannot resample as '
                    'the pipeline does; export without --with-preprocessing and feed images '
                    'transformed as its eval_preprocessing.json says.')
  if record.normalize == 'per_pixel_mean' and not args.with_preprocessing \
      and args.image_size != size:
    raise UserError(f'{args.weights} subtracts a {size}x{size} mean image '
                    f"(normalize='per_pixel_mean'): pass --image-size {size}.")
  ones, zeros = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
  if record.normalize == 'mean_std':
    mean, std = record.mean, record.std
  else:  # 'none' and 'per_pixel_mean' divide by nothing; 'none' subtracts nothing
    mean, std = zeros, ones
  return Preprocessing(resize=size, crop=size, interpolation=record.interpolation,
                       mean=tuple(mean), std=tuple(std), mean_image=record.mean_image,
                       normalize=record.normalize)


def _preprocessing(args, weights, info):
  """The tag (from --tag or the file) and the Preprocessing of predict's rules; a workdir's
  own eval transform for a workdir (`jax_resnet.config.eval_preprocessing`)."""
  if predict.is_workdir(args.weights):
    from jax_resnet.config import eval_preprocessing
    if args.tag:
      raise UserError(f'{args.weights} is a training workdir: its images are fed as its run '
                      'evaluated them (eval_preprocessing.json); leave out --tag.')
    record = eval_preprocessing(args.weights)
    args.eval_transform = {key: record.to_json()[key] for key in (
        'image_size', 'crop_fraction', 'interpolation', 'antialias', 'pixel_range')}
    return None, workdir_preprocessing(args, record)
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
  try:
    if args.weights is None and not args.tag:
      raise UserError('pass --weights FILE, or --tag TAG to bake in a published file.')
    found = None  # the one loader (tag, file or workdir), after the arguments' own checks
    if args.model is None:
      found = predict.load_weights(args, weights)
      args.model = found.model
    info = jax_resnet.model_info(args.model)
    platforms = _check_arguments(args, info)
    if args.format == 'onnx':
      from jax_resnet import onnx_export
      onnx_export.check_arguments(args)
    tag, preprocessing = _preprocessing(args, weights, info)
    found = found or predict.load_weights(args, weights)
    variables = found.variables
    num_classes = weights.trees.head_classes_of(variables)
    workdir = args.weights if predict.is_workdir(args.weights) else None
    class_names = (predict.class_names_of(workdir, num_classes) or list(found.class_names or ())
                   or (weights.imagenet_classes() if num_classes == 1000 else None))
  except (UserError, ValueError, OSError) as error:
    print(f'export: error: {error}', file=sys.stderr)
    return 2
  model = jax_resnet.create_model(args.model, num_classes=num_classes, **found.options)
  if args.format == 'onnx':
    return onnx_export.write_from_arguments(
        args, model, variables, preprocessing if args.with_preprocessing else None)
  exported = export_model(model, variables, args.image_size, args.dtype,
                          preprocessing if args.with_preprocessing else None, platforms)
  eval_transform = getattr(args, 'eval_transform', None)
  meta = metadata(exported, args.model, tag, args.image_size, args.dtype,
                  preprocessing if args.with_preprocessing else None, preprocessing.subtracted,
                  preprocessing.std, class_names, preprocessing.normalize, eval_transform)
  try:
    program, description = write_artefact(args.out, exported, meta)
  except ExportError as error:
    print(f'export: error: {error}', file=sys.stderr)
    return 2
  print(f'wrote {program} ({os.path.getsize(program)} bytes; platforms '
        f'{", ".join(exported.platforms)}) and {description}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
