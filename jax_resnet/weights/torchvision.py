"""torchvision <-> jax_resnet: torchvision's module names for our models (the layouts and
conversions are `jax_resnet.weights.torch_layout`'s).

Image models: conv1/bn1, layer{s}.{b}.conv{k}/bn{k}, downsample.0/1, fc. Video models: the stem
is Sequential(conv, BN, ReLU) (R(2+1)D: spatial conv, BN, ReLU, temporal conv, BN, ReLU), blocks
are Sequential(conv, BN[, ReLU]) and (2+1)D convs Sequential(spatial conv, BN, ReLU, temporal
conv).
"""

import functools
import re
from typing import Mapping, Optional

from jax_resnet.model_facts import model_info
from jax_resnet.registry import listed_when_asked, models_with_source
from jax_resnet.stems import stem_spec
from jax_resnet.weights.torch_layout import (check_layout, checked_for_export,
                                             default_num_classes, layout_entries,
                                             read_layout, strip_wrapper_prefix, variable_shapes,
                                             write_layout)
from jax_resnet.weights.trees import head_classes, supported_model


def torchvision_models(input_kind=None) -> tuple:
  """The registry rows that torchvision publishes, images first (those of `input_kind`,
  'image' or 'video', if given), read from the rows when asked: IMAGE_MODELS, VIDEO_MODELS
  and TORCHVISION_MODELS are this, so a row registered after import is in them."""
  names = models_with_source('torchvision')
  kinds = ('image', 'video') if input_kind is None else (input_kind,)
  return tuple(name for kind in kinds for name in names if model_info(name).input_kind == kind)


__getattr__ = listed_when_asked(
    __name__, IMAGE_MODELS=lambda: torchvision_models('image'),
    VIDEO_MODELS=lambda: torchvision_models('video'), TORCHVISION_MODELS=torchvision_models)

_PROJECTION = {'proj_conv': 'downsample.0', 'proj_bn': 'downsample.1'}
_VIDEO_BLOCK = {**_PROJECTION}
for _k in (1, 2):
  _VIDEO_BLOCK.update({f'conv{_k}': f'conv{_k}.0', f'bn{_k}': f'conv{_k}.1',
                       f'conv{_k}_spatial': f'conv{_k}.0.0', f'conv{_k}_mid_bn': f'conv{_k}.0.1',
                       f'conv{_k}_temporal': f'conv{_k}.0.3'})


def check_supported(model_name: str) -> str:
  supported = torchvision_models()
  return supported_model(model_name, supported, (
      f'{model_name} has no torchvision counterpart; torchvision weights exist for '
      f'{", ".join(supported)}.'))


def _torch_module(model_name: str, path: tuple) -> str:
  """Our module path ('stage1_block1', 'conv1') -> torchvision's 'layer1.0.conv1'."""
  video = model_info(model_name).input_kind == 'video'
  if path == ('head',):
    return 'fc'
  if len(path) == 1:
    return stem_spec(model_info(model_name).stem).torch_names[path[0]]
  match = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  if not match or len(path) != 2:
    raise RuntimeError(f'no torchvision name for {"/".join(path)} in {model_name}')
  layer = f'layer{match[1]}.{int(match[2]) - 1}'
  table = _VIDEO_BLOCK if video else _PROJECTION
  return f'{layer}.{table.get(path[1], path[1])}'


@functools.lru_cache(maxsize=64)
def torch_layout(model_name: str, num_classes: int) -> tuple:
  """Entries in torchvision's state_dict order (module by module, BN buffers after params)."""
  return layout_entries(variable_shapes(model_name, num_classes),
                        functools.partial(_torch_module, model_name))


def _reading(model_name: str, state_dict: Mapping, num_classes: Optional[int], source: str):
  """check_layout's / read_layout's arguments for a torchvision-layout state dict."""
  check_supported(model_name)
  arrays = strip_wrapper_prefix(state_dict)
  if num_classes is None:
    num_classes = head_classes(arrays) or default_num_classes(model_name)

  def explain():
    from jax_resnet.weights.recognise import guess_model
    guess = guess_model(arrays)
    guess = None if guess == model_name else guess
    return (f'The file holds {guess} weights.' if guess else 'Check the model name and that '
            'the file holds a torchvision-layout ResNet state dict.'), guess

  return (torch_layout(model_name, num_classes), arrays, f'{source} does not match {model_name}',
          explain)


def check_torchvision(model_name: str, state_dict: Mapping, num_classes: Optional[int] = None,
                      *, source: str = 'state dict'):
  """`from_torchvision`'s names and shapes check alone: `state_dict` may hold shapes only (a
  file's header), nothing is converted."""
  check_layout(*_reading(model_name, state_dict, num_classes, source))


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
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message;
      its `holds` names the torchvision model the dict fits, if another one does.
  """
  return read_layout(*_reading(model_name, state_dict, num_classes, source))


def to_torchvision(model_name: str, variables: Mapping) -> dict:
  """{'params', 'batch_stats'} -> torchvision's state dict (name -> numpy array), in
  torchvision's order, num_batches_tracked included as int64 0.

    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

  A head-less tree (num_classes=0) gives a state dict without 'fc.*'.
  """
  check_supported(model_name)
  num_classes, flat = checked_for_export(model_name, variables)
  return write_layout(torch_layout(model_name, num_classes), flat)
