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
import types
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import export as jax_export  # a submodule jax 0.7 does not import itself
import numpy as np

from jax_resnet import inference, model_facts, registry
from jax_resnet.errors import UserError, check_choice
# Preprocessing and preprocessing_function: the inference layer's, offered here as before.
from jax_resnet.inference import Preprocessing, preprocessing_function  # noqa: F401
from jax_resnet.utils import created_file_mode
from jax_resnet.weights.npz import read_tag
from jax_resnet.weights.trees import head_classes_of

DTYPES = ('float32', 'bfloat16', 'float16')
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
METADATA_SUFFIX = '.json'
FORMATS = ('jax', 'onnx')


class ExportError(UserError):
  """A program that cannot be written, or a written one that fails its check on loading."""


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
  parser.add_argument('--format', choices=FORMATS, default='jax',
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
  return inference.of_eval_record(record)


def _preprocessing(args, info):
  """(tag, Preprocessing, eval_transform): the tag (from --tag or the file) and its transform
  by predict's rules (`inference.tag_transform`, without --resize: export takes the tag's);
  for a workdir its own eval transform (`jax_resnet.config.eval_preprocessing`) and the
  record's resize/crop fields for the JSON."""
  if inference.is_workdir(args.weights):
    from jax_resnet.config import eval_preprocessing
    if args.tag:
      raise UserError(f'{args.weights} is a training workdir: its images are fed as its run '
                      'evaluated them (eval_preprocessing.json); leave out --tag.')
    record = eval_preprocessing(args.weights)
    eval_transform = {key: record.to_json()[key] for key in (
        'image_size', 'crop_fraction', 'interpolation', 'antialias', 'pixel_range')}
    return None, workdir_preprocessing(args, record), eval_transform
  transform = inference.tag_transform(args.model, args.weights, args.tag, info.input_size)
  preprocessing = Preprocessing(**{**dataclasses.asdict(Preprocessing()), **transform})
  tag = args.tag or read_tag(args.weights)
  if args.with_preprocessing:
    if preprocessing.crop < info.min_input_size:
      raise UserError(f"the crop {preprocessing.crop} is below {args.model}'s smallest input "
                      f'{info.min_input_size}.')
    if tag is None and info.input_size != inference.CROP:
      raise UserError(f'{args.model} takes {info.input_size}x{info.input_size} images and has '
                      "no weight tag: --with-preprocessing needs the tag's transform; pass "
                      '--tag or preprocess outside the program.')
  return tag, preprocessing, None


@dataclasses.dataclass(frozen=True)
class _Inputs:
  """Everything checked and read before the model is converted."""
  model: str
  found: object              # the weights.loader.Pretrained record
  platforms: Optional[Tuple[str, ...]]
  tag: Optional[str]
  preprocessing: Preprocessing
  eval_transform: Optional[dict]
  class_names: Optional[list]


def _inputs(args) -> _Inputs:
  """The arguments' checks, then the weights through the one loader (inference.read_weights)."""
  if args.weights is None and not args.tag:
    raise UserError('pass --weights FILE, or --tag TAG to bake in a published file.')
  check_choice(ExportError, 'format', args.format, FORMATS)
  found, model = None, args.model  # the weights are read after the arguments' own checks
  if model is None:
    found = inference.read_weights(args.weights, args.tag)
    model = found.model
  inference.check_model(model)
  info = model_facts.model_info(model)
  args = argparse.Namespace(**{**vars(args), 'model': model})
  platforms = _check_arguments(args, info)
  if args.format == 'onnx':
    from jax_resnet import onnx_export
    onnx_export.check_settings(args.dtype, args.platforms)
  tag, preprocessing, eval_transform = _preprocessing(args, info)
  found = found or inference.read_weights(args.weights, args.tag, model)
  num_classes = head_classes_of(found.variables)
  workdir = args.weights if inference.is_workdir(args.weights) else None
  class_names = inference.class_names_for(found, workdir, num_classes) or None
  return _Inputs(model, found, platforms, tag, preprocessing, eval_transform, class_names)


def _write(args) -> str:
  """Writes what `args` (the parser's fields) ask for; returns the line saying what."""
  inputs = _inputs(args)
  found = inputs.found
  model = registry.create_model(inputs.model, num_classes=head_classes_of(found.variables),
                                **found.options)
  baked = inputs.preprocessing if args.with_preprocessing else None
  if args.format == 'onnx':
    from jax_resnet import onnx_export
    return onnx_export.write_file(args.out, model, found.variables, args.image_size, baked)
  exported = export_model(model, found.variables, args.image_size, args.dtype, baked,
                          inputs.platforms)
  preprocessing = inputs.preprocessing
  meta = metadata(exported, inputs.model, inputs.tag, args.image_size, args.dtype, baked,
                  preprocessing.subtracted, preprocessing.std, inputs.class_names,
                  preprocessing.normalize, inputs.eval_transform)
  program, description = write_artefact(args.out, exported, meta)
  return (f'wrote {program} ({os.path.getsize(program)} bytes; platforms '
          f'{", ".join(exported.platforms)}) and {description}')


def export_file(source, out: str, image_size: int, *, tag: Optional[str] = None,
                model: Optional[str] = None, format: str = 'jax', dtype: str = 'float32',
                with_preprocessing: bool = False,
                platforms: Optional[Sequence[str]] = None) -> str:
  """`jax-resnet export` as a call (also spelt `jax_resnet.export(...)`): writes `out` from
  `source` (what `jax_resnet.load_pretrained` takes: a weight tag, a weights file or a trainer
  workdir; `tag`: the weights' tag when `source` is a file), the same file the command writes
  for the same settings. `format`: 'jax' (a serialized jax.export program and its JSON) or
  'onnx'. Returns the line the command prints; bad input raises a UserError."""
  from jax_resnet.weights import loader
  weights = source
  if tag is None and source is not None and loader.is_tag_like(source):
    weights, tag = None, source
  args = argparse.Namespace(
      weights=None if weights is None else os.fspath(weights), tag=tag, model=model,
      image_size=image_size, out=os.fspath(out), dtype=dtype,
      with_preprocessing=with_preprocessing, format=format,
      platforms=None if platforms is None else ','.join(platforms))
  return _write(args)


def main(argv=None, prog='python -m jax_resnet.export') -> int:
  args = _parser(prog).parse_args(argv)
  try:
    written = _write(args)
  except (UserError, OSError) as error:
    print(f'export: error: {error}', file=sys.stderr)
    return 2
  print(written)
  return 0


class _CallableModule(types.ModuleType):
  """`jax_resnet.export(...)` is `export_file(...)`: the package's attribute of that name is
  this module (a submodule import binds it), so the module itself takes the call."""

  def __call__(self, *args, **kwargs):
    return export_file(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == '__main__':
  sys.exit(main())
