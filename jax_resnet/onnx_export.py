"""A model as an ONNX file (jax2onnx): the inference function with the weights inside as
initializers and a symbolic batch dimension, run by ONNX Runtime, TensorRT, OpenVINO.

    proto = export_onnx(model, variables, image_size=224)          # onnx.ModelProto
    write_onnx('resnet50.onnx', proto)
    session = onnxruntime.InferenceSession('resnet50.onnx')
    logits, = session.run(None, {'images': images})                 # (N, 224, 224, 3) float32

`jax-resnet export --format onnx ...` calls it (export.py); docs/sharing.md shows both.

jax2onnx converts flax.linen modules by replacing some of them while it traces (its plugins
patch `nn.Conv.__call__`, `nn.max_pool`, `nn.avg_pool`, ...). Three of those replacements do
not fit these models, so the traced function runs under `_exact_shims`: pooling computed from
strided slices (its max_pool and avg_pool take neither explicit pads nor positional window
arguments), constant padding as concatenation (its lax.pad lowering fails on a symbolic batch
dimension), and the convolution kernels of Weight Standardization standardised before
tracing (its Conv replacement reads the raw 'kernel' parameter). Each is the same arithmetic.
"""

import contextlib
import itertools
import os
import tempfile
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util
from jax import lax

from jax_resnet.errors import UserError

EXTRA = 'onnx'
INPUT_NAME = 'images'
BATCH = 'batch'
OPSET = 21


class OnnxExportError(UserError, ValueError):
  """A model, option or setting that this ONNX export cannot express, or the extra missing."""


def _require_extra():
  """jax2onnx and onnx, or one line naming the extra that installs them."""
  try:
    import jax2onnx  # noqa: F401
    import onnx  # noqa: F401
  except ImportError as error:
    raise OnnxExportError(
        f'ONNX export needs jax2onnx and onnx ({error}); install them with '
        f"pip install 'jax-resnet-family[{EXTRA}]'.") from None


def _constant_border(x, axis: int, size: int, value):
  """`size` slices of `value` shaped like one slice of `x` along `axis` (the batch stays
  symbolic: built from x itself, never from its shape)."""
  edge = jnp.full_like(lax.slice_in_dim(x, 0, 1, axis=axis), value)
  return [edge] * size


def _pad_spatial(x, pads, value):
  """`x` padded with `value` by (low, high) per axis from 1 on, by concatenation."""
  for axis, (low, high) in enumerate(pads, start=1):
    if low or high:
      x = jnp.concatenate(_constant_border(x, axis, low, value) + [x]
                          + _constant_border(x, axis, high, value), axis=axis)
  return x


def _window_reduce(x, window, strides, padding, combine, init):
  """(reduction of every `window` of `x`, its pads, output spatial size): the windows are
  strided slices of the padded input, combined elementwise."""
  n = len(window)
  strides = tuple(strides or (1,) * n)
  spatial = tuple(int(d) for d in x.shape[1:1 + n])
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(spatial, window, strides, padding)
  else:
    pads = [tuple(p) for p in padding]
  out = [(s + lo + hi - w) // st + 1 for s, (lo, hi), w, st in zip(spatial, pads, window, strides)]
  x = _pad_spatial(x, pads, init)
  result = None
  for offset in itertools.product(*(range(w) for w in window)):
    part = x
    for axis, (o, m, st) in enumerate(zip(offset, out, strides), start=1):
      part = lax.slice_in_dim(part, o, o + (m - 1) * st + 1, st, axis)
    result = part if result is None else combine(result, part)
  return result, pads


def _max_pool(inputs, window_shape, strides=None, padding='VALID'):
  return _window_reduce(inputs, window_shape, strides, padding, jnp.maximum, -jnp.inf)[0]


def _avg_pool(inputs, window_shape, strides=None, padding='VALID', count_include_pad=True):
  total, pads = _window_reduce(inputs, window_shape, strides, padding, jnp.add, 0.0)
  if count_include_pad:
    return total / np.float32(np.prod(window_shape))
  return total / _valid_counts(inputs.shape[1:-1], window_shape, strides, pads)


def _valid_counts(spatial, window, strides, pads) -> np.ndarray:
  """How many input (not padding) positions each window covers: a numpy constant."""
  strides = tuple(strides or (1,) * len(window))
  ones = np.pad(np.ones(tuple(int(d) for d in spatial), np.float32), pads)
  out = [(s - w) // st + 1 for s, w, st in zip(ones.shape, window, strides)]
  counts = sum(ones[tuple(slice(o, o + (m - 1) * st + 1, st) for o, m, st in
                          zip(offset, out, strides))]
               for offset in itertools.product(*(range(w) for w in window)))
  return counts[None, ..., None]


def _pad(array, pad_width, mode='constant', constant_values=0, **kwargs):
  """jnp.pad; constant padding of the non-batch axes by concatenation."""
  if mode != 'constant' or kwargs or np.ndim(constant_values) or not hasattr(array, 'ndim'):
    return _ORIGINAL_PAD(array, pad_width, mode=mode, constant_values=constant_values, **kwargs)
  widths = [tuple(int(v) for v in w) for w in np.broadcast_to(np.asarray(pad_width),
                                                              (array.ndim, 2))]
  if widths[0] != (0, 0):
    return _ORIGINAL_PAD(array, pad_width, constant_values=constant_values)
  return _pad_spatial(array, widths[1:], constant_values)


_ORIGINAL_PAD = jnp.pad


@contextlib.contextmanager
def _exact_shims():
  """While the model is traced for ONNX: flax's pools and jnp.pad as the same arithmetic in
  operations jax2onnx converts with a symbolic batch (module docstring)."""
  saved = {(nn, 'max_pool'): nn.max_pool, (nn, 'avg_pool'): nn.avg_pool, (jnp, 'pad'): jnp.pad}
  nn.max_pool, nn.avg_pool, jnp.pad = _max_pool, _avg_pool, _pad
  try:
    yield
  finally:
    for (owner, name), value in saved.items():
      setattr(owner, name, value)


def onnx_ready(model, variables):
  """(model, variables) computing the same function in the form the converter takes: Weight
  Standardization applied to the kernels beforehand, 1x1 convolutions and the stem as plain
  convolutions, stages unrolled. Refuses (OnnxExportError) what it cannot express."""
  from jax_resnet import scan
  if model.__class__.__name__ == 'VideoResNet':
    raise OnnxExportError('ONNX export takes image models; video models (r3d_18, mc3_18, '
                          'r2plus1d_18) are not supported.')
  changes = {'conv1x1_as_dot': False, 'stem_conv': 'conv', 'scan_blocks': False}
  if model.scan_blocks:
    variables = scan.unstack_blocks(variables)
  if model.weight_standardization:
    from jax_resnet.layers import standardize_kernel
    flat = traverse_util.flatten_dict(variables['params'])
    flat = {path: (standardize_kernel(jnp.asarray(value)) if path[-1] == 'kernel'
                   and path[0] != 'head' else value) for path, value in flat.items()}
    variables = {**variables, 'params': traverse_util.unflatten_dict(flat)}
    changes['weight_standardization'] = False
  return model.clone(**changes), variables


def export_onnx(model, variables, image_size: int, preprocessing=None,
                return_features: bool = False, dtype: Optional[str] = None):
  """An `onnx.ModelProto` of `model.apply(variables, images, train=False)`: input 'images'
  (batch, image_size, image_size, 3) float32, or uint8 images of that size with
  `preprocessing` (an `inference.Preprocessing`, run first inside the graph); output 'logits'
  (float32), or with `return_features` one output per feature level, named by it."""
  _require_extra()
  from jax2onnx import to_onnx
  if dtype not in (None, 'float32'):
    raise OnnxExportError(f'compute dtype {dtype} cannot be expressed in this ONNX export '
                          '(ONNX Runtime CPU lacks its kernels); export float32.')
  model, variables = onnx_ready(model, variables)
  constants = jax.tree.map(jnp.asarray, variables)
  prepare = None
  if preprocessing is not None:
    from jax_resnet.inference import preprocessing_function
    prepare = preprocessing_function(preprocessing, image_size, image_size)
  names = None
  if return_features:
    shapes = jax.eval_shape(lambda x: model.apply(constants, x, train=False,
                                                  return_features=True),
                            jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32))
    names = sorted(shapes)

  def infer(images):
    with _exact_shims():
      x = images if prepare is None else prepare(images)
      out = model.apply(constants, x, train=False, return_features=return_features)
    if return_features:
      return tuple(jnp.asarray(out[name], jnp.float32) for name in names)
    return jnp.asarray(out, jnp.float32)

  input_dtype = jnp.float32 if preprocessing is None else jnp.uint8
  spec = jax.ShapeDtypeStruct((1, image_size, image_size, 3), input_dtype)
  try:
    return to_onnx(infer, [(BATCH, image_size, image_size, 3)] if preprocessing is None
                   else [_symbolic_spec(spec)], model_name=model.__class__.__name__,
                   opset=OPSET, input_names=[INPUT_NAME],
                   output_names=names or ['logits'])
  except NotImplementedError as error:
    raise OnnxExportError(f'jax2onnx cannot express a part of this model: '
                          f'{" ".join(str(error).split())[:200]}') from None


def _symbolic_spec(spec):
  """`spec` with a symbolic batch dimension, for inputs of another dtype than float32."""
  from jax import export as jax_export
  batch, = jax_export.symbolic_shape(BATCH)
  return jax.ShapeDtypeStruct((batch,) + spec.shape[1:], spec.dtype)


def write_onnx(path: str, proto) -> str:
  """Writes `proto` to `path` through a temporary file renamed into place (nothing
  half-written on failure); returns `path`."""
  folder = os.path.dirname(os.path.abspath(path))
  handle, partial = tempfile.mkstemp(prefix='.onnx.', dir=folder)
  try:
    with os.fdopen(handle, 'wb') as f:
      f.write(proto.SerializeToString())
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return path


def check_settings(dtype: str, platforms):
  """`jax-resnet export --format onnx`'s own refusals, before any work: the extra installed,
  settings ONNX export has no counterpart for (`platforms`: --platforms as given)."""
  _require_extra()
  if dtype != 'float32':
    raise OnnxExportError(f'--dtype {dtype} cannot be expressed in this ONNX export (ONNX '
                          'Runtime CPU lacks its kernels); leave --dtype at float32.')
  if platforms is not None:
    raise OnnxExportError('--platforms applies to --format jax; an ONNX file runs wherever an '
                          'ONNX runtime does.')


def write_file(out: str, model, variables, image_size: int, preprocessing) -> str:
  """The --format onnx branch of `jax-resnet export`: exports, writes `out`; returns the line
  saying what was written."""
  write_onnx(out, export_onnx(model, variables, image_size, preprocessing))
  return (f'wrote {out} ({os.path.getsize(out)} bytes; ONNX opset {OPSET}, input '
          f"'{INPUT_NAME}' ({BATCH}, {image_size}, {image_size}, 3) "
          f"{'uint8' if preprocessing is not None else 'float32'})")
