"""timm <-> jax_resnet: parameter names and layouts of timm's ResNet family (resnet.py: ResNet,
ResNet-D, Wide ResNet, ResNeXt) and of its ResNetV2 (resnetv2.py: pre-activation with
BatchNorm, and BiT with GroupNorm and Weight Standardization).

Layouts are torch's (`jax_resnet.weights.torch_layout`): convolution kernels (out, in,
spatial...), linear kernels (out, in); BiT's head is a 1x1 convolution (num_classes, C, 1, 1)
where ours is a Dense (C, num_classes). GroupNorm has weight and bias only. Weight
Standardization keeps the raw kernel as the parameter in both libraries, so kernels copy as
they are.
"""

import functools
import re
from typing import Mapping, Optional

from jax_resnet.model_facts import model_info
from jax_resnet.registry import model_defaults, model_sources, listed_when_asked, models_with_source
from jax_resnet.stems import stem_spec
from jax_resnet.weights.torch_layout import (check_layout, checked_for_export, layout_entries,
                                             read_layout, strip_wrapper_prefix, variable_shapes,
                                             write_layout)
from jax_resnet.weights.trees import WeightsError, head_classes


def timm_names() -> dict:
  """Our name -> timm's, read from the registry rows when asked (timm 1.0 registers these;
  their parameter counts equal ours); TIMM_NAMES is this."""
  return {name: model_sources(name)['timm'] for name in models_with_source('timm')}


__getattr__ = listed_when_asked(__name__, TIMM_NAMES=timm_names)


# ResNet-D's shortcut is Sequential(AvgPool2d or Identity, conv, bn); the plain one (conv, bn).
_V1_PROJECTION = {False: {'proj_conv': 'downsample.0', 'proj_bn': 'downsample.1'},
                  True: {'proj_conv': 'downsample.1', 'proj_bn': 'downsample.2'}}
_V2_BLOCK = {'bn1': 'norm1', 'bn2': 'norm2', 'bn3': 'norm3', 'proj_conv': 'downsample.conv'}


def resolve(name: str) -> str:
  """Our registry name for `name`: ours, or timm's with or without a pretrained tag
  ('resnetv2_50x1_bit.goog_in21k_ft_in1k' -> 'bit_resnet50x1')."""
  base, names = name.split('.', 1)[0], timm_names()
  if base in names:
    return base
  ours = {timm: ours for ours, timm in names.items()}
  if base in ours:
    return ours[base]
  model_defaults(name)  # unknown names: the registry's error with close matches
  raise WeightsError(f'{name} has no timm counterpart here; timm layouts exist for '
                     f'{", ".join(names)}.')


def _is_v2(model_name: str) -> bool:
  return model_defaults(model_name)[1].get('preact', False)


def _timm_module(model_name: str, path: tuple) -> str:
  """Our module path ('stage1_block1', 'conv1') -> timm's module name."""
  v2 = _is_v2(model_name)
  if path == ('head',):
    return 'head.fc' if v2 else 'fc'
  if len(path) == 1:
    if path == ('final_bn',):
      return 'norm'
    stem = stem_spec(model_info(model_name).stem)
    return (stem.timm_v2_names if v2 else stem.torch_names)[path[0]]
  match = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  if not match or len(path) != 2:
    raise RuntimeError(f'no timm name for {"/".join(path)} in {model_name}')
  stage, block = int(match[1]), int(match[2]) - 1
  if v2:
    return f'stages.{stage - 1}.blocks.{block}.{_V2_BLOCK.get(path[1], path[1])}'
  table = _V1_PROJECTION[model_defaults(model_name)[1].get('avg_down', False)]
  return f'layer{stage}.{block}.{table.get(path[1], path[1])}'


@functools.lru_cache(maxsize=64)
def timm_layout(model_name: str, num_classes: int) -> tuple:
  """`Entry`s of timm's state dict for our `model_name`, module by module (norm buffers after
  their parameters). Entry kind 'conv_head' is BiT/ResNetV2's 1x1 convolution head."""
  return layout_entries(variable_shapes(model_name, num_classes),
                        functools.partial(_timm_module, model_name), conv_head=_is_v2(model_name))


def _reading(model_name: str, state_dict: Mapping, num_classes: Optional[int], source: str):
  """check_layout's / read_layout's arguments for a timm state dict."""
  model_name = resolve(model_name)
  arrays = strip_wrapper_prefix(state_dict)
  if num_classes is None:
    num_classes = head_classes(arrays)
  hint = 'Check the model name and that the dict is its timm state dict.'
  return (timm_layout(model_name, num_classes), arrays,
          f'{source} does not match timm {model_sources(model_name)["timm"]}',
          lambda: (hint, None))


def check_timm(model_name: str, state_dict: Mapping, num_classes: Optional[int] = None, *,
               source: str = 'state dict'):
  """`from_timm`'s names and shapes check alone: `state_dict` may hold shapes only (a file's
  header), nothing is converted."""
  check_layout(*_reading(model_name, state_dict, num_classes, source))


def from_timm(model_name: str, state_dict: Mapping, num_classes: Optional[int] = None, *,
              source: str = 'state dict') -> dict:
  """A timm state dict -> this library's variables ({'params'}, plus 'batch_stats' for
  BatchNorm models).

  Args:
    model_name: our name ('resnet50d', 'bit_resnet50x1', 'preact_resnet50') or timm's
      ('resnet50d', 'resnetv2_50x1_bit.goog_in21k', 'resnetv2_50'); TIMM_NAMES lists them.
    state_dict: name -> torch tensor or numpy array (`timm_model.state_dict()`); a 'module.'
      prefix is accepted, num_batches_tracked is optional and ignored.
    num_classes: classes of the head; None reads them from the state dict (0 when it has no
      head, as timm's num_classes=0 models).
    source: how the error messages name the dict.

  Raises:
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message.
  """
  return read_layout(*_reading(model_name, state_dict, num_classes, source))


def to_timm(model_name: str, variables: Mapping) -> dict:
  """Our variables -> timm's state dict (name -> numpy array), num_batches_tracked as int64 0.

    timm_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
  """
  model_name = resolve(model_name)
  num_classes, flat = checked_for_export(model_name, variables)
  return write_layout(timm_layout(model_name, num_classes), flat)
