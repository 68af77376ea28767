"""BiT's original checkpoints <-> jax_resnet: the `.npz` files of Kolesnikov et al. 2020 ("Big
Transfer"), as published at https://storage.googleapis.com/bit_models/ (BiT-S-R50x1.npz,
BiT-M-R50x1-ILSVRC2012.npz, ...) and read by big_vision and by timm's `resnetv2._load_weights`.

The names are TensorFlow scope paths; the layouts are JAX/TF's, so they equal ours:

    resnet/root_block/standardized_conv2d/kernel            (7, 7, 3, 64k)   conv_init/kernel
    resnet/block{s}/unit{u:02d}/{a,b,c}/group_norm/gamma    (C,)             bn1..bn3/scale
    resnet/block{s}/unit{u:02d}/{a,b,c}/group_norm/beta     (C,)             bn1..bn3/bias
    resnet/block{s}/unit{u:02d}/{a,b,c}/standardized_conv2d/kernel  HWIO    conv1..conv3/kernel
    resnet/block{s}/unit01/a/proj/standardized_conv2d/kernel  (1, 1, I, O)   proj_conv/kernel
    resnet/group_norm/gamma, resnet/group_norm/beta         (C,)             final_bn/scale, bias
    resnet/head/conv2d/kernel                               (1, 1, C, N)     head/kernel (C, N)
    resnet/head/conv2d/bias                                 (N,)             head/bias

(stage s and block u count from 1, as our stage{s}_block{u}). Unit a's GroupNorm is the
pre-activation of the block input, which also feeds the projection (`a/proj`, first unit of each
block only). The head is a 1x1 convolution there and a Dense here; a file without
`resnet/head/*` (the feature extractors) loads as a backbone (num_classes=0). Weight
Standardization keeps the raw kernels as parameters in both, so every array copies as it is.
"""

import functools
import re
from typing import Mapping, Optional

import numpy as np

from jax_resnet.model_facts import model_info
from jax_resnet.registry import model_defaults, model_sources, listed_when_asked, models_with_source
from jax_resnet.stems import stem_spec
from jax_resnet.weights.torch_layout import checked_for_export, modules, variable_shapes
from jax_resnet.weights.trees import (Shape, supported_model, WeightsMismatchError, compare,
                                      head_classes, mismatch_message, to_float32, unflatten)

PREFIX = 'resnet/'


def big_vision_models() -> tuple:
  """The registry rows BiT published, read when asked; BIG_VISION_MODELS is this."""
  return models_with_source('bit')


__getattr__ = listed_when_asked(__name__, BIG_VISION_MODELS=big_vision_models)


_UNIT = {'bn1': 'a/group_norm', 'bn2': 'b/group_norm', 'bn3': 'c/group_norm',
         'conv1': 'a/standardized_conv2d', 'conv2': 'b/standardized_conv2d',
         'conv3': 'c/standardized_conv2d', 'proj_conv': 'a/proj/standardized_conv2d'}
_LEAF = {'scale': 'gamma', 'bias': 'beta', 'kernel': 'kernel'}  # GroupNorm and convolutions
_HEAD_LEAF = {'kernel': 'kernel', 'bias': 'bias'}


def check_supported(model_name: str) -> str:
  supported = big_vision_models()
  return supported_model(model_name, supported, (
      f'{model_name} has no BiT .npz counterpart; BiT checkpoints exist for '
      f'{", ".join(supported)}.'))


def looks_like_big_vision(names) -> bool:
  """Whether these array names (an .npz's members) are a BiT checkpoint's."""
  return any(str(name).startswith(PREFIX + 'root_block/') for name in names)


def _bv_module(model_name: str, path: tuple) -> str:
  """Our module path ('stage1_block1', 'conv1') -> the checkpoint's scope."""
  if path == ('final_bn',):
    return PREFIX + 'group_norm'
  if path == ('head',):
    return PREFIX + 'head/conv2d'
  if len(path) == 1:  # the stem's row names its layers (`stems.STEMS`)
    return PREFIX + stem_spec(model_info(model_name).stem).big_vision_names[path[0]]
  match = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  if not match or len(path) != 2 or path[1] not in _UNIT:
    raise RuntimeError(f'no BiT name for {"/".join(path)}')
  return f'{PREFIX}block{int(match[1])}/unit{int(match[2]):02d}/{_UNIT[path[1]]}'


@functools.lru_cache(maxsize=32)
def big_vision_layout(model_name: str, num_classes: int) -> tuple:
  """((checkpoint name, our flat name, checkpoint shape), ...) in our module order."""
  shapes = variable_shapes(check_supported(model_name), num_classes)
  entries = []
  for path, leaves in modules(shapes['params']).items():
    scope, head = _bv_module(model_name, path), path == ('head',)
    for leaf, value in leaves.items():
      shape = (1, 1) + tuple(value.shape) if head and leaf == 'kernel' else tuple(value.shape)
      entries.append((f'{scope}/{(_HEAD_LEAF if head else _LEAF)[leaf]}',
                      'params/' + '/'.join(path + (leaf,)), shape))
  return tuple(entries)


def _describe(arrays: Mapping):
  """(registry name or None, 'R{depth}x{k}'-like description or None) of a checkpoint: the
  model from the one guesser (`recognise.guess_model`), the description from the root
  convolution's width (output channels / 64) and the units per block, named by the depth of
  the BiT row with those units (BiT-M-R{depth}x{k})."""
  from jax_resnet.weights.recognise import guess_model, stage_sizes
  root = arrays.get(PREFIX + 'root_block/standardized_conv2d/kernel')
  shape = getattr(root, 'shape', ())
  if len(shape) != 4 or shape[-1] % 64:
    return None, None
  width, stages = int(shape[-1]) // 64, stage_sizes(arrays)
  rows = [name for name in big_vision_models()
          if tuple(model_defaults(name)[1]['stage_sizes']) == stages]
  depth = rows and re.fullmatch(r'BiT-M-R(\d+)x\d+', model_sources(rows[0])['bit'])
  what = (f'R{depth[1]}x{width}' if depth else f'units per block {stages}, width x{width}')
  # a file of a registered row's depth and width, whatever else is wrong, is named as that row
  same = [name for name in rows if model_defaults(name)[1].get('stem_width') == 64 * width]
  return guess_model(arrays) or (same[0] if same else None), what


def check_big_vision(model_name: str, arrays: Mapping, num_classes: Optional[int] = None, *,
                     source: str = 'npz') -> int:
  """Checks the names and shapes of `arrays` (arrays, or anything with `.shape`, such as an
  .npz's headers) against `model_name`'s BiT layout; returns the head's classes (0: none).

  Raises:
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message,
      naming the model the file holds when it is another BiT ResNet.
  """
  model_name = check_supported(model_name)
  if num_classes is None:
    num_classes = head_classes(arrays)
  entries = big_vision_layout(model_name, num_classes)
  expected = {name: Shape(shape) for name, _, shape in entries}
  missing, unexpected, wrong = compare(expected, {str(k): v for k, v in arrays.items()})
  if missing or unexpected or wrong:
    guess, what = _describe(arrays)
    if guess and guess != model_name:
      hint = f'The file holds {guess} weights.'
    elif what and not guess:
      hint = f'The file holds a BiT ResNet ({what}) that no registered model matches.'
    else:
      hint = ('Check the model name, num_classes (None reads it from the head, 0 loads a '
              'backbone) and that the file is a BiT checkpoint (resnet/root_block/...).')
    raise WeightsMismatchError(mismatch_message(
        f'{source} does not match BiT {model_name} ({len(entries)} arrays)', missing,
        unexpected, wrong, hint), holds=guess if guess != model_name else None)
  return num_classes


def from_big_vision(model_name: str, arrays: Mapping, num_classes: Optional[int] = None, *,
                    source: str = 'npz') -> dict:
  """A BiT checkpoint (name -> array, e.g. `dict(np.load('BiT-M-R50x1.npz'))`) -> this
  library's variables ({'params'} only: GroupNorm keeps no statistics), float32 numpy.

  Args:
    model_name: one of BIG_VISION_MODELS (bit_resnet50x1 ... bit_resnet152x4).
    arrays: the checkpoint's arrays under their published names (module docstring).
    num_classes: classes of the head; None reads them from resnet/head/conv2d/kernel (0, no
      head, when the file has none); 0 expects a file without head.
    source: how the error messages name the file.

  Raises:
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message,
      checked before anything is converted.
  """
  arrays = {str(k): v for k, v in arrays.items()}
  num_classes = check_big_vision(model_name, arrays, num_classes, source=source)
  flat = {}
  for name, ours, _ in big_vision_layout(model_name, num_classes):
    value = to_float32(arrays[name])
    if ours == 'params/head/kernel':  # (1, 1, C, N) -> (C, N)
      value = value[0, 0]
    flat[ours] = np.ascontiguousarray(value)
  return unflatten(flat)


def to_big_vision(model_name: str, variables: Mapping) -> dict:
  """Our variables -> a BiT checkpoint (published name -> numpy array), as
  `np.savez(path, **to_big_vision(name, variables))` writes a file that BiT's and timm's
  loaders read. A head-less tree gives a file without resnet/head/*."""
  model_name = check_supported(model_name)
  num_classes, flat = checked_for_export(model_name, variables)
  out = {}
  for name, ours, shape in big_vision_layout(model_name, num_classes):
    out[name] = np.ascontiguousarray(np.asarray(flat[ours]).reshape(shape))
  return out
