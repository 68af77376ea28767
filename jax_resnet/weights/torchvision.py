"""torchvision <-> jax_resnet: parameter names and layouts.

Convolution kernels are (spatial..., in, out) here and (out, in, spatial...) in torch; Dense
kernels are (in, out) here and (out, in) in torch. BatchNorm scale/bias/mean/var are torch's
weight/bias/running_mean/running_var; torch's num_batches_tracked has no counterpart (it only
matters for momentum=None) and is written back as 0.
"""

import dataclasses
import functools
import re
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jax_resnet.registry import create_model, model_defaults, model_info
from jax_resnet.weights.trees import (WeightsError, WeightsMismatchError, compare,
                                      flatten, mismatch_message, to_float32, unflatten)

IMAGE_MODELS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
                'wide_resnet50_2', 'wide_resnet101_2', 'resnext50_32x4d', 'resnext101_32x8d',
                'resnext101_64x4d')
VIDEO_MODELS = ('r3d_18', 'mc3_18', 'r2plus1d_18')
TORCHVISION_MODELS = IMAGE_MODELS + VIDEO_MODELS

_STEMS = {
    'image': {'conv_init': 'conv1', 'bn_init': 'bn1'},
    'video': {'conv_init': 'stem.0', 'bn_init': 'stem.1'},
    'r2plus1d': {'conv_init_spatial': 'stem.0', 'bn_init_spatial': 'stem.1',
                 'conv_init': 'stem.3', 'bn_init': 'stem.4'},
}
_PROJECTION = {'proj_conv': 'downsample.0', 'proj_bn': 'downsample.1'}
# torchvision's video blocks are Sequential(conv, BN[, ReLU]); (2+1)D convs are
# Sequential(spatial conv, BN, ReLU, temporal conv).
_VIDEO_BLOCK = {**_PROJECTION}
for _k in (1, 2):
  _VIDEO_BLOCK.update({f'conv{_k}': f'conv{_k}.0', f'bn{_k}': f'conv{_k}.1',
                       f'conv{_k}_spatial': f'conv{_k}.0.0', f'conv{_k}_mid_bn': f'conv{_k}.0.1',
                       f'conv{_k}_temporal': f'conv{_k}.0.3'})
_BN_PARAMS = (('scale', 'weight'), ('bias', 'bias'))
_BN_STATS = (('mean', 'running_mean'), ('var', 'running_var'))
COUNTER = 'num_batches_tracked'


@dataclasses.dataclass(frozen=True)
class Entry:
  torch_name: str
  ours: Optional[str]         # flat '/'-joined name, None for num_batches_tracked
  kind: str                   # 'conv' | 'dense' | 'copy' | 'counter'
  torch_shape: tuple


def check_supported(model_name: str):
  if model_name not in TORCHVISION_MODELS:
    model_defaults(model_name)  # unknown names: the registry's error with close matches
    raise WeightsError(f'{model_name} has no torchvision counterpart; torchvision weights '
                       f'exist for {", ".join(TORCHVISION_MODELS)}.')


def default_num_classes(model_name: str) -> int:
  cls, defaults = model_defaults(model_name)
  return defaults.get('num_classes', cls.num_classes)


@functools.lru_cache(maxsize=64)
def variable_shapes(model_name: str, num_classes: int) -> dict:
  """{'params', 'batch_stats'} of ShapeDtypeStructs (traced, nothing allocated), with dict keys
  in the order the model creates its modules (torchvision's order)."""
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


def _torch_module(model_name: str, path: tuple) -> str:
  """Our module path ('stage1_block1', 'conv1') -> torchvision's 'layer1.0.conv1'."""
  video = model_info(model_name).input_kind == 'video'
  if path == ('head',):
    return 'fc'
  if len(path) == 1:
    stem = _STEMS['r2plus1d' if model_name == 'r2plus1d_18' else 'video' if video else 'image']
    return stem[path[0]]
  match = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  if not match or len(path) != 2:
    raise RuntimeError(f'no torchvision name for {"/".join(path)} in {model_name}')
  layer = f'layer{match[1]}.{int(match[2]) - 1}'
  table = _VIDEO_BLOCK if video else _PROJECTION
  return f'{layer}.{table.get(path[1], path[1])}'


def _modules(tree) -> dict:
  """{module path: {leaf name: leaf}} for every module that holds variables, in tree order."""
  modules = {}
  for (*path, name), leaf in traverse_util.flatten_dict(tree).items():
    modules.setdefault(tuple(path), {})[name] = leaf
  return modules


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


def layout_entries(shapes: Mapping, torch_name, conv_head: bool = False) -> tuple:
  """`Entry`s of a torch state dict for our variable `shapes`, module by module (norm buffers
  after their parameters); `torch_name(path)` names a module the torch way. The head is a
  Linear, or with `conv_head` a 1x1 convolution (entry kind 'conv_head'). Norms without batch
  statistics (GroupNorm) have weight and bias only."""
  with_stats = set(_modules(shapes.get('batch_stats', {})))
  entries = []
  for path, leaves in _modules(shapes['params']).items():
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


@functools.lru_cache(maxsize=64)
def torch_layout(model_name: str, num_classes: int) -> tuple:
  """Entries in torchvision's state_dict order (module by module, BN buffers after params)."""
  return layout_entries(variable_shapes(model_name, num_classes),
                        functools.partial(_torch_module, model_name))


def _to_ours(kind: str, array: np.ndarray) -> np.ndarray:
  if kind == 'conv':  # (out, in, *spatial) -> (*spatial, in, out)
    return np.ascontiguousarray(np.transpose(array, tuple(range(2, array.ndim)) + (1, 0)))
  if kind == 'dense':
    return np.ascontiguousarray(array.T)
  return array


def _to_torch(kind: str, array: np.ndarray) -> np.ndarray:
  if kind == 'conv':  # (*spatial, in, out) -> (out, in, *spatial)
    n = array.ndim
    return np.ascontiguousarray(np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2))))
  if kind == 'dense':
    return np.ascontiguousarray(array.T)
  return array


def _strip_wrapper_prefix(arrays: dict) -> dict:
  """DataParallel/DDP checkpoints prefix every name with 'module.'."""
  if arrays and all(k.startswith('module.') for k in arrays):
    return {k[len('module.'):]: v for k, v in arrays.items()}
  return arrays


def _compare_layout(entries, arrays: dict):
  """compare() of a state dict against a layout; num_batches_tracked is optional (timm's files
  leave it out) and never reported (torch bookkeeping, no weights)."""
  expected = {e.torch_name: np.empty(e.torch_shape, np.float32) for e in entries
              if e.kind != 'counter'}
  given = {k: v for k, v in arrays.items() if not k.endswith(f'.{COUNTER}')}
  return compare(expected, given)


def _guess_model(arrays: dict, num_classes: int) -> Optional[str]:
  """The torchvision model whose layout the state dict matches exactly, if any."""
  for name in TORCHVISION_MODELS:
    if not any(_compare_layout(torch_layout(name, num_classes), arrays)):
      return name
  return None


def checked_for_export(model_name: str, variables: Mapping):
  """(head classes, flat variables) of a tree that fits `model_name` exactly; otherwise one
  WeightsMismatchError listing the differences. Every exporter starts here."""
  params = variables['params']
  num_classes = int(params['head']['kernel'].shape[-1]) if 'head' in params else 0
  flat = flatten(variables)
  missing, unexpected, wrong = compare(flatten(variable_shapes(model_name, num_classes)), flat)
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f'variables do not match {model_name}', missing, unexpected, wrong,
        'Export the variables of the model named here (unrolled: jax_resnet.unstack_blocks).'))
  return num_classes, flat


def from_torchvision(model_name: str, state_dict: Mapping, num_classes: Optional[int] = None,
                     *, source: str = 'state dict') -> dict:
  """A torchvision-layout state dict -> this library's {'params', 'batch_stats'}.

  Args:
    model_name: one of TORCHVISION_MODELS (resnet18 ... resnext101_64x4d, r3d_18, mc3_18,
      r2plus1d_18).
    state_dict: name -> torch tensor or numpy array, as `torchvision_model.state_dict()` or a
      timm ResNet file (same names); a 'module.' prefix (DataParallel) is accepted,
      num_batches_tracked is optional and ignored.
    num_classes: classes of the head; None reads it from 'fc.weight' (the model's default
      when absent); 0 expects no head.
    source: how the error messages name the dict (e.g. the file it came from).

  Returns:
    Nested dicts of float32 numpy arrays, ready for `model.apply`.

  Raises:
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message.
  """
  check_supported(model_name)
  arrays = _strip_wrapper_prefix({str(k): v for k, v in state_dict.items()})
  if num_classes is None:
    fc = arrays.get('fc.weight')
    has_fc = fc is not None and len(getattr(fc, 'shape', ())) == 2
    num_classes = int(fc.shape[0]) if has_fc else default_num_classes(model_name)
  entries = torch_layout(model_name, num_classes)
  missing, unexpected, wrong = _compare_layout(entries, arrays)
  if missing or unexpected or wrong:
    guess = _guess_model(arrays, num_classes)
    hint = (f'The file holds {guess} weights.' if guess else 'Check the model name and that '
            'the file holds a torchvision-layout ResNet state dict.')
    size = sum(e.kind != 'counter' for e in entries)
    raise WeightsMismatchError(mismatch_message(
        f'{source} does not match {model_name} ({size} tensors)', missing, unexpected, wrong,
        hint))
  flat = {e.ours: _to_ours(e.kind, to_float32(arrays[e.torch_name])) for e in entries
          if e.kind != 'counter'}
  return unflatten(flat)


def to_torchvision(model_name: str, variables: Mapping) -> dict:
  """{'params', 'batch_stats'} -> torchvision's state dict (name -> numpy array), in
  torchvision's order, num_batches_tracked included as int64 0.

    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

  A head-less tree (num_classes=0) gives a state dict without 'fc.*'.
  """
  check_supported(model_name)
  num_classes, flat = checked_for_export(model_name, variables)
  out = {}
  for entry in torch_layout(model_name, num_classes):
    if entry.kind == 'counter':
      out[entry.torch_name] = np.zeros((), np.int64)
      continue
    out[entry.torch_name] = _to_torch(entry.kind, np.asarray(flat[entry.ours]))
  return out
