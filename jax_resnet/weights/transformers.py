"""Hugging Face transformers' ResNet <-> jax_resnet: `ResNetForImageClassification` (the
`microsoft/resnet-18/26/34/50/101/152` repositories: `config.json` and `model.safetensors`).

Names are transformers' module paths (the layouts are torch's, `weights.torch_layout`):

    resnet.embedder.embedder.{convolution,normalization}       conv_init, bn_init
    resnet.encoder.stages.{s}.layers.{b}.layer.{k}.convolution  stage{s+1}_block{b+1}/conv{k+1}
    resnet.encoder.stages.{s}.layers.{b}.layer.{k}.normalization                    .../bn{k+1}
    resnet.encoder.stages.{s}.layers.{b}.shortcut.{convolution,normalization}  proj_conv, proj_bn
    classifier.1                                                head (Linear after a Flatten)

The network is torchvision's ResNet (7x7/2 stem, 3x3/2 max pool, stride in the 3x3 of a
bottleneck, projection shortcuts where the shape changes) when the config says so
(`downsample_in_bottleneck` false, `downsample_in_first_stage` false, ReLU); `model_for_config`
picks the registered model from `layer_type` and `depths` and refuses any other config.
"""

import functools
import re
from typing import Mapping, Optional

from jax_resnet.model_facts import model_info
from jax_resnet.registry import model_defaults, listed_when_asked, models_with_source
from jax_resnet.stems import stem_spec
from jax_resnet.weights.torch_layout import (check_layout, checked_for_export, layout_entries,
                                             read_layout, strip_wrapper_prefix, variable_shapes,
                                             write_layout)
from jax_resnet.weights.trees import WeightsError, head_classes, supported_model



def transformers_models() -> tuple:
  """The registry rows with a transformers counterpart (microsoft/resnet-<depth>), read when
  asked; TRANSFORMERS_MODELS is this."""
  return models_with_source('transformers')


__getattr__ = listed_when_asked(__name__, TRANSFORMERS_MODELS=transformers_models)


_SHORTCUT = {'proj_conv': 'shortcut.convolution', 'proj_bn': 'shortcut.normalization'}
# The config values under which transformers' ResNet is ours (its defaults).
_REQUIRED = {'num_channels': 3, 'embedding_size': 64, 'hidden_act': 'relu',
             'downsample_in_first_stage': False, 'downsample_in_bottleneck': False}


def check_supported(model_name: str) -> str:
  supported = transformers_models()
  return supported_model(model_name, supported, (
      f'{model_name} has no transformers ResNet counterpart; transformers layouts exist for '
      f'{", ".join(supported)}.'))


def _module(model_name: str, path: tuple) -> str:
  """Our module path ('stage1_block1', 'conv1') -> transformers' module name."""
  if path == ('head',):
    return 'classifier.1'
  if len(path) == 1:  # the stem's row names its layers (`stems.STEMS`)
    return stem_spec(model_info(model_name).stem).transformers_names[path[0]]
  match = re.fullmatch(r'stage(\d+)_block(\d+)', path[0])
  layer = re.fullmatch(r'(?:conv|bn)(\d)', path[1]) if len(path) == 2 else None
  if not match or not (layer or path[1] in _SHORTCUT):
    raise RuntimeError(f'no transformers name for {"/".join(path)}')
  block = f'resnet.encoder.stages.{int(match[1]) - 1}.layers.{int(match[2]) - 1}'
  if path[1] in _SHORTCUT:
    return f'{block}.{_SHORTCUT[path[1]]}'
  kind = 'convolution' if path[1].startswith('conv') else 'normalization'
  return f'{block}.layer.{int(layer[1]) - 1}.{kind}'


@functools.lru_cache(maxsize=64)
def transformers_layout(model_name: str, num_classes: int) -> tuple:
  """`Entry`s of transformers' state dict for our `model_name`."""
  return layout_entries(variable_shapes(model_name, num_classes),
                        functools.partial(_module, model_name))


def model_for_config(config: Mapping, source: str = 'config.json') -> str:
  """The registered model a transformers `ResNetConfig` (its config.json as a dict) describes;
  WeightsError naming the first field that differs from every model we have."""
  if config.get('model_type') not in (None, 'resnet'):
    raise WeightsError(f'{source} describes a {config["model_type"]!r} model, not a '
                       "transformers ResNet (model_type 'resnet').")
  for key, value in _REQUIRED.items():
    if config.get(key, value) != value:
      raise WeightsError(f'{source}: {key}={config[key]!r}, but the ResNets here need {value!r} '
                         '(the layout of microsoft/resnet-*).')
  block = {'basic': 'basic', 'bottleneck': 'bottleneck'}.get(config.get('layer_type'))
  depths = tuple(config.get('depths', ()))
  for name in transformers_models():
    defaults = model_defaults(name)[1]
    if defaults['block'] == block and tuple(defaults['stage_sizes']) == depths:
      widths = [64 * 2 ** i * (4 if block == 'bottleneck' else 1) for i in range(4)]
      if list(config.get('hidden_sizes', widths)) != widths:
        raise WeightsError(f'{source}: hidden_sizes={config["hidden_sizes"]} differ from '
                           f'{name}\'s {widths}.')
      return name
  raise WeightsError(f'{source}: no registered model has layer_type='
                     f'{config.get("layer_type")!r} and depths={list(depths)}; transformers '
                     f'layouts exist for {", ".join(transformers_models())}.')


def from_transformers(model_name: str, state_dict: Mapping, num_classes: Optional[int] = None,
                      *, source: str = 'state dict') -> dict:
  """A transformers `ResNetForImageClassification` state dict (or a `ResNetModel`'s, under
  'resnet.'; with num_classes=0, no head) -> our variables.

  Raises:
    WeightsMismatchError: names missing, unexpected or of the wrong shape, all in one message.
  """
  return read_layout(*_reading(model_name, state_dict, num_classes, source))


def check_transformers(model_name: str, state_dict: Mapping,
                       num_classes: Optional[int] = None, *, source: str = 'state dict'):
  """`from_transformers`'s names and shapes check alone: `state_dict` may hold shapes only (a
  file's header), nothing is converted."""
  check_layout(*_reading(model_name, state_dict, num_classes, source))


def _reading(model_name: str, state_dict: Mapping, num_classes: Optional[int], source: str):
  check_supported(model_name)
  arrays = strip_wrapper_prefix(state_dict)
  if arrays and not any(k.startswith('resnet.') for k in arrays):  # a bare ResNetModel
    arrays = {f'resnet.{k}': v for k, v in arrays.items()}
  if num_classes is None:
    num_classes = head_classes(arrays)
  hint = ('Check the model name (transformers.model_for_config reads it from config.json) and '
          'that the file holds a transformers ResNet state dict.')
  return (transformers_layout(model_name, num_classes), arrays,
          f'{source} does not match transformers {model_name}', lambda: (hint, None))


def to_transformers(model_name: str, variables: Mapping) -> dict:
  """Our variables -> transformers' state dict (numpy), num_batches_tracked as int64 0:
  `ResNetForImageClassification(config).load_state_dict({k: torch.from_numpy(v) ...})`."""
  check_supported(model_name)
  num_classes, flat = checked_for_export(model_name, variables)
  return write_layout(transformers_layout(model_name, num_classes), flat)
