"""The Flax ImageNet example's ResNets (google/flax, examples/imagenet: ResNet18 ... ResNet200)
-> jax_resnet, for `create_model(name, padding='same')`.

The two are the same ResNet v1.5 with the same layouts (flax HWIO kernels, Dense (in, out),
BatchNorm scale/bias and mean/var); only the names differ, because the example leaves its
blocks, convolutions and norms unnamed and flax numbers them per class:

    conv_init, bn_init                                      conv_init, bn_init
    ResNetBlock_{b} | BottleneckResNetBlock_{b}             stage{s}_block{u}
      .../Conv_{i}, .../BatchNorm_{i}  (i from 0)             .../conv{i+1}, .../bn{i+1}
      .../conv_proj, .../norm_proj                            .../proj_conv, .../proj_bn
    Dense_0                                                 head

where b counts the blocks of all stages from 0. The example pads its strided 3x3 convolutions
and its max pool as XLA's 'SAME' (0 before, 1 after on even sizes), hence padding='same'.

Checkpoints: the example's train.py saves its TrainState (step, params, opt_state, batch_stats,
dynamic_scale) with `flax.training.checkpoints` as <workdir>/checkpoint_<step> (an Orbax
directory, or a msgpack file from flax versions before Orbax); `read_checkpoint` restores one
with the same API, without a template.
"""

import os
import re
from typing import Mapping, Optional

import numpy as np

from jax_resnet.model_facts import model_info
from jax_resnet.registry import model_defaults, listed_when_asked, models_with_source
from jax_resnet.stems import stem_spec
from jax_resnet.weights.trees import (supported_model, SEP, WeightsFileError, WeightsMismatchError,
                                      compare, flatten, head_classes, mismatch_message, unflatten)

CHECKPOINT_PREFIX = 'checkpoint_'  # flax.training.checkpoints' default, which train.py keeps
_LAYER = {'proj_conv': 'conv_proj', 'proj_bn': 'norm_proj'}
_NUMBERED = re.compile(r'(conv|bn)(\d+)')
_BLOCK = re.compile(r'stage(\d+)_block(\d+)')


def flax_imagenet_models() -> tuple:
  """The registry rows the example has, read when asked; FLAX_IMAGENET_MODELS is this."""
  return models_with_source('flax_imagenet')


__getattr__ = listed_when_asked(__name__, FLAX_IMAGENET_MODELS=flax_imagenet_models)


def check_supported(model_name: str) -> str:
  supported = flax_imagenet_models()
  return supported_model(model_name, supported, (
      f'{model_name} has no counterpart in the Flax ImageNet example; its models are '
      f'{", ".join(supported)}.'))


def _example_module(path: tuple, stage_sizes, block_name: str, stem) -> tuple:
  """Our module path ('stage2_block1', 'conv1') -> the example's ('ResNetBlock_2', 'Conv_0')."""
  if path == ('head',):
    return ('Dense_0',)
  if len(path) == 1:  # the stem's row names its layers (`stems.STEMS`)
    return (stem.flax_imagenet_names[path[0]],)
  found = _BLOCK.fullmatch(path[0])
  stage, unit = int(found[1]), int(found[2])
  block = sum(stage_sizes[:stage - 1]) + unit - 1
  layer = _NUMBERED.fullmatch(path[1])
  if layer:
    kind = 'Conv' if layer[1] == 'conv' else 'BatchNorm'
    name = f'{kind}_{int(layer[2]) - 1}'
  else:
    name = _LAYER[path[1]]
  return (f'{block_name}_{block}', name) + path[2:]


def example_names(model_name: str, num_classes: int = 1000) -> dict:
  """The example's flat name ('params/ResNetBlock_2/Conv_0/kernel') -> ours
  ('params/stage2_block1/conv1/kernel') and our array's shape, for every variable."""
  from jax_resnet.weights.torchvision import variable_shapes
  check_supported(model_name)
  options = model_defaults(model_name)[1]
  block_name = 'BottleneckResNetBlock' if options['block'] == 'bottleneck' else 'ResNetBlock'
  stem = stem_spec(model_info(model_name).stem)
  names = {}
  for ours, shape in flatten(variable_shapes(model_name, num_classes)).items():
    collection, *path, leaf = ours.split(SEP)
    module = _example_module(tuple(path), options['stage_sizes'], block_name, stem)
    names[SEP.join((collection, *module, leaf))] = (ours, shape)
  return names


def _variables_of(variables) -> Mapping:
  """{'params', 'batch_stats'} of a variables dict, a restored TrainState dict or the example's
  TrainState object itself."""
  if not isinstance(variables, Mapping) and hasattr(variables, 'params'):
    return {'params': variables.params, 'batch_stats': getattr(variables, 'batch_stats', {})}
  return variables


def from_flax_imagenet(model_name: str, variables, source: str = 'variables') -> dict:
  """The Flax ImageNet example's variables of `model_name` (resnet18 ... resnet200, its
  ResNet18 ... ResNet200) -> ours, for `create_model(model_name, padding='same')`.

  `variables` holds 'params' and 'batch_stats' (the example's `model.init` output, its
  TrainState or the dict a checkpoint restores to; other entries are ignored). The head keeps
  the example's class count. Arrays are copied as numpy, dtypes kept.

  Raises WeightsMismatchError listing, in the example's names, every array that is missing,
  unexpected or of the wrong shape.
  """
  given = flatten(_variables_of(variables))
  num_classes = head_classes(given) or 1000
  names = example_names(model_name, num_classes)
  expected = {theirs: shape for theirs, (_, shape) in names.items()}
  missing, unexpected, wrong = compare(expected, given)
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f"{source}: not the Flax ImageNet example's {model_name} ({len(expected)} arrays)",
        missing, unexpected, wrong,
        'Check the model name: the example trains ResNet18/34/50/101/152/200.'))
  return unflatten({ours: np.asarray(given[theirs]) for theirs, (ours, _) in names.items()})


def is_example_tree(flat: Mapping) -> bool:
  """Whether flat names ('params/ResNetBlock_0/Conv_0/kernel') are the example's rather than
  ours: its blocks are numbered per class, ours per stage."""
  return any(re.match(r'params/(Bottleneck)?ResNetBlock_\d+/', name) for name in flat)


def find_checkpoint(path) -> Optional[str]:
  """The checkpoint of the example's train.py at `path`: `path` itself when it is a
  checkpoint_<step>, else the newest checkpoint_<step> in the directory; None when there is
  none (so other readers can try the path)."""
  path = os.path.abspath(os.fspath(path))  # Orbax takes absolute paths only
  if re.fullmatch(CHECKPOINT_PREFIX + r'\d+', os.path.basename(path)):
    return path
  if not os.path.isdir(path):
    return None
  from flax.training import checkpoints
  return checkpoints.latest_checkpoint(path, CHECKPOINT_PREFIX)


def read_checkpoint(path) -> dict:
  """{'params', 'batch_stats'} of the TrainState the example's train.py saved at `path` (a
  workdir or one checkpoint_<step>), as `flax.training.checkpoints.restore_checkpoint`
  returns it without a template, in the example's names."""
  checkpoint = find_checkpoint(path)
  if checkpoint is None:
    raise WeightsFileError(f'{path} holds no {CHECKPOINT_PREFIX}<step> checkpoint of the Flax '
                           'ImageNet example; pass its workdir or one checkpoint_<step>.')
  from flax.training import checkpoints
  try:
    state = checkpoints.restore_checkpoint(checkpoint, target=None)
  except Exception as error:  # orbax, tensorstore and msgpack raise many types
    first = (str(error).strip().splitlines() or [''])[0][:300]
    raise WeightsFileError(f'cannot read the Flax checkpoint {checkpoint} '
                           f'({type(error).__name__}: {first}).') from None
  if not isinstance(state, Mapping) or 'params' not in state:
    raise WeightsFileError(f'{checkpoint} is not a TrainState of the Flax ImageNet example '
                           '(no params).')
  return {'params': state['params'], 'batch_stats': state.get('batch_stats') or {}}


def load_checkpoint(model_name: str, path) -> dict:
  """Our variables for `create_model(model_name, padding='same')` from the example's
  checkpoint at `path` (`read_checkpoint`, then `from_flax_imagenet`)."""
  check_supported(model_name)
  return from_flax_imagenet(model_name, read_checkpoint(path), source=str(path))
