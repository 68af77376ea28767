"""The base of every torch-layout converter (torchvision, timm, transformers): entries that pair
each tensor of a torch state dict with one of our variables, the layout comparison, the array
conversions, and the export check.

Convolution kernels are (spatial..., in, out) here and (out, in, spatial...) in torch; Dense
kernels are (in, out) here and (out, in) in torch; a head written as a 1x1 convolution
(timm's ResNetV2 and BiT) is (classes, C, 1, 1) there. BatchNorm scale/bias/mean/var are torch's
weight/bias/running_mean/running_var; torch's num_batches_tracked has no counterpart (it only
matters for momentum=None) and is written back as 0. A converter module is then a name table
(`torch_name(path)`: our module path -> its torch module name) plus its own differences.
"""

import dataclasses
import functools
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jax_resnet.model_facts import model_info
from jax_resnet.registry import create_model, model_defaults
from jax_resnet.weights.trees import (Shape, WeightsMismatchError, compare, flatten,
                                      head_classes_of, mismatch_message, to_float32, unflatten)

COUNTER = 'num_batches_tracked'
_BN_PARAMS = (('scale', 'weight'), ('bias', 'bias'))
_BN_STATS = (('mean', 'running_mean'), ('var', 'running_var'))


@dataclasses.dataclass(frozen=True)
class Entry:
  torch_name: str
  ours: Optional[str]         # flat '/'-joined name, None for num_batches_tracked
  kind: str                   # 'conv' | 'dense' | 'conv_head' | 'copy' | 'counter'
  torch_shape: tuple


def default_num_classes(model_name: str) -> int:
  cls, defaults = model_defaults(model_name)
  return defaults.get('num_classes', cls.num_classes)


@functools.lru_cache(maxsize=64)
def variable_shapes(model_name: str, num_classes: int) -> dict:
  """{'params', 'batch_stats'} of ShapeDtypeStructs (traced, nothing allocated), with dict keys
  in the order the model creates its modules (torch's state dict order)."""
  model = create_model(model_name, num_classes=num_classes)
  video = model_info(model_name).input_kind == 'video'
  x = jax.ShapeDtypeStruct((1, 2, 16, 16, 3) if video else (1, 32, 32, 3), jnp.float32)
  names = []

  def init(key, x):
    variables = model.init(key, x, train=False)
    names.extend(flatten(variables))  # jax sorts the dicts it returns; keep creation order
    return variables

  shapes = flatten(jax.eval_shape(init, jax.random.key(0), x))
  return unflatten({name: shapes[name] for name in names})


def modules(tree) -> dict:
  """{module path: {leaf name: leaf}} for every module that holds variables, in tree order."""
  found = {}
  for (*path, name), leaf in traverse_util.flatten_dict(tree).items():
    found.setdefault(tuple(path), {})[name] = leaf
  return found


def _norm_entries(prefix: str, path: tuple, leaves: Mapping, with_stats: bool) -> list:
  """The `Entry`s of one norm layer at torch name `prefix`: weight and bias, then (BatchNorm,
  `with_stats`) the running statistics and the batch counter."""
  ours = 'params/' + '/'.join(path)
  entries = [Entry(f'{prefix}.{theirs}', f'{ours}/{name}', 'copy', leaves[name].shape)
             for name, theirs in _BN_PARAMS]
  if with_stats:
    stats = 'batch_stats/' + '/'.join(path)
    entries += [Entry(f'{prefix}.{theirs}', f'{stats}/{name}', 'copy', leaves['scale'].shape)
                for name, theirs in _BN_STATS]
    entries.append(Entry(f'{prefix}.{COUNTER}', None, 'counter', ()))
  return entries


def layout_entries(shapes: Mapping, torch_name: Callable, conv_head: bool = False) -> tuple:
  """`Entry`s of a torch state dict for our variable `shapes`, module by module (norm buffers
  after their parameters); `torch_name(path)` names a module the torch way. The head is a
  Linear, or with `conv_head` a 1x1 convolution (entry kind 'conv_head'). Norms without batch
  statistics (GroupNorm) have weight and bias only."""
  with_stats = set(modules(shapes.get('batch_stats', {})))
  entries = []
  for path, leaves in modules(shapes['params']).items():
    prefix, ours = torch_name(path), 'params/' + '/'.join(path)
    if 'scale' in leaves:
      entries.extend(_norm_entries(prefix, path, leaves, path in with_stats))
    elif path == ('head',):
      c, n = leaves['kernel'].shape
      kind, shape = ('conv_head', (n, c, 1, 1)) if conv_head else ('dense', (n, c))
      entries.append(Entry(f'{prefix}.weight', f'{ours}/kernel', kind, shape))
      entries.append(Entry(f'{prefix}.bias', f'{ours}/bias', 'copy', leaves['bias'].shape))
    else:
      kernel = leaves['kernel'].shape
      entries.append(Entry(f'{prefix}.weight', f'{ours}/kernel', 'conv',
                           (kernel[-1], kernel[-2]) + tuple(kernel[:-2])))
  return tuple(entries)


def to_ours(kind: str, array: np.ndarray) -> np.ndarray:
  """One torch tensor (as numpy) -> our layout for an entry of `kind`."""
  if kind == 'conv':  # (out, in, *spatial) -> (*spatial, in, out)
    return np.ascontiguousarray(np.transpose(array, tuple(range(2, array.ndim)) + (1, 0)))
  if kind == 'dense':
    return np.ascontiguousarray(array.T)
  if kind == 'conv_head':  # (n, c, 1, 1) -> (c, n)
    return np.ascontiguousarray(array[:, :, 0, 0].T)
  return array


def to_torch(kind: str, array: np.ndarray) -> np.ndarray:
  """Inverse of `to_ours`."""
  if kind == 'conv':  # (*spatial, in, out) -> (out, in, *spatial)
    n = array.ndim
    return np.ascontiguousarray(np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2))))
  if kind == 'dense':
    return np.ascontiguousarray(array.T)
  if kind == 'conv_head':
    return np.ascontiguousarray(array.T[:, :, None, None])
  return array


def strip_wrapper_prefix(state_dict: Mapping) -> dict:
  """str names; DataParallel/DDP checkpoints prefix every name with 'module.', dropped here."""
  arrays = {str(k): v for k, v in state_dict.items()}
  if arrays and all(k.startswith('module.') for k in arrays):
    return {k[len('module.'):]: v for k, v in arrays.items()}
  return arrays


def compare_layout(entries, arrays: Mapping):
  """compare() of a state dict against a layout; num_batches_tracked is optional (timm's files
  leave it out) and never reported (torch bookkeeping, no weights)."""
  expected = {e.torch_name: Shape(e.torch_shape) for e in entries if e.kind != 'counter'}
  given = {k: v for k, v in arrays.items() if not k.endswith(f'.{COUNTER}')}
  return compare(expected, given)


def check_layout(entries, arrays: Mapping, subject: str, explain: Callable):
  """Nothing when the names and shapes of `arrays` (tensors, or anything with `.shape`: a
  file's header) fit `entries`; otherwise one WeightsMismatchError '<subject> (<n> tensors):
  missing ...', where `explain()` gives the message's closing hint and the model the dict
  holds (or None), its `holds` field."""
  missing, unexpected, wrong = compare_layout(entries, arrays)
  if missing or unexpected or wrong:
    size = sum(e.kind != 'counter' for e in entries)
    hint, holds = explain()
    raise WeightsMismatchError(mismatch_message(f'{subject} ({size} tensors)', missing,
                                                unexpected, wrong, hint), holds=holds)


def read_layout(entries, arrays: Mapping, subject: str, explain: Callable) -> dict:
  """A state dict that fits `entries` (`check_layout`) -> our variables (float32 numpy)."""
  check_layout(entries, arrays, subject, explain)
  return unflatten({e.ours: to_ours(e.kind, to_float32(arrays[e.torch_name]))
                    for e in entries if e.kind != 'counter'})


def write_layout(entries, flat: Mapping) -> dict:
  """Our flat variables -> the torch state dict of `entries` (numpy, in their order),
  num_batches_tracked as int64 0."""
  out = {}
  for entry in entries:
    if entry.kind == 'counter':
      out[entry.torch_name] = np.zeros((), np.int64)
    else:
      out[entry.torch_name] = to_torch(entry.kind, np.asarray(flat[entry.ours]))
  return out


def checked_for_export(model_name: str, variables: Mapping):
  """(head classes, flat variables) of a tree that fits `model_name` exactly; otherwise one
  WeightsMismatchError listing the differences. Every exporter starts here."""
  num_classes = head_classes_of(variables)
  flat = flatten(variables)
  missing, unexpected, wrong = compare(flatten(variable_shapes(model_name, num_classes)), flat)
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f'variables do not match {model_name}', missing, unexpected, wrong,
        'Export the variables of the model named here (unrolled: jax_resnet.unstack_blocks).'))
  return num_classes, flat

