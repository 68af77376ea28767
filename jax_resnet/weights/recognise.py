"""What a set of named arrays holds, from names and shapes alone (arrays, or anything with a
`.shape`: an .npz's or a safetensors file's headers): the layout (`layout_kind`), the blocks
per stage (`stage_sizes`) and the registered model (`guess_model`), the one model guesser of
every reader and converter, for every layout this library reads:

    'ours'           params/stage1_block1/conv1/kernel          (.npz, checkpoints, workdirs)
    'flax_imagenet'  params/ResNetBlock_0/Conv_0/kernel         (the Flax ImageNet example)
    'big_vision'     resnet/block1/unit01/a/standardized_conv2d (BiT's release .npz)
    'transformers'   resnet.encoder.stages.0.layers.0...        (microsoft/resnet-*)
    'torch'          layer1.0.conv1.weight, stages.0.blocks.0   (torchvision's, timm's)

The head's classes come from `trees.head_classes`, the one head reader. The candidates are
the registered models whose converter rows name the layout (`registry.models_with_source`,
asked each time, so a row registered later is a candidate) and whose blocks per stage match;
a model is the answer when the arrays fit its layout exactly and no other model's does.
"""

import re
from typing import Mapping, Optional

from jax_resnet import registry
from jax_resnet.weights.trees import Shape, compare, flatten, head_classes

_BLOCK_NAMES = (  # (pattern, stage counted from, block counted from)
    (re.compile(r'(?:params|batch_stats)/stage(\d+)_block(\d+)/'), 1, 1),
    (re.compile(r'resnet/block(\d+)/unit(\d+)/'), 1, 1),
    (re.compile(r'resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.'), 0, 0),
    (re.compile(r'layer(\d+)\.(\d+)\.'), 1, 0),
    (re.compile(r'stages\.(\d+)\.blocks\.(\d+)\.'), 0, 0),
)
_EXAMPLE_BLOCK = re.compile(r'params/((?:Bottleneck)?ResNetBlock)_(\d+)/')


def layout_kind(names) -> str:
  """'ours' | 'flax_imagenet' | 'big_vision' | 'transformers' | 'torch' (module text)."""
  names = [str(name) for name in names]
  if any(_EXAMPLE_BLOCK.match(name) for name in names):
    return 'flax_imagenet'
  if any(name.startswith(('params/', 'batch_stats/')) for name in names):
    return 'ours'
  if any(name.startswith('resnet/') for name in names):
    return 'big_vision'
  if any(name.startswith('resnet.') for name in names):
    return 'transformers'
  return 'torch'


def stage_sizes(names) -> tuple:
  """Blocks per stage, from the block names of any layout above but the Flax example's
  (which numbers its blocks across stages)."""
  counts = {}
  for name in map(str, names):
    for pattern, first_stage, first_block in _BLOCK_NAMES:
      found = pattern.match(name)
      if found:
        stage = int(found[1]) - first_stage
        counts[stage] = max(counts.get(stage, 0), int(found[2]) - first_block + 1)
        break
  return tuple(counts[stage] for stage in sorted(counts))


def _expected(kind: str, name: str, num_classes: int) -> dict:
  """{array name: Shape} of registered model `name` in layout `kind`; for 'torch' the union
  of its torchvision and timm layouts is not taken: one layout per call (see _layouts)."""
  from jax_resnet.weights import big_vision, flax_imagenet
  from jax_resnet.weights.torch_layout import variable_shapes
  if kind == 'ours':
    return flatten(variable_shapes(name, num_classes))
  if kind == 'flax_imagenet':
    return {theirs: shape for theirs, (_, shape) in
            flax_imagenet.example_names(name, num_classes or 1000).items()}
  return {theirs: Shape(shape) for theirs, _, shape in
          big_vision.big_vision_layout(name, num_classes)}


def _torch_entries(kind: str, name: str, num_classes: int) -> list:
  """The torch-layout entry lists of `name` in `kind` ('torch': timm's and torchvision's)."""
  from jax_resnet.weights import timm, torchvision, transformers
  if kind == 'transformers':
    return [transformers.transformers_layout(name, num_classes)]
  sources = registry.model_sources(name)
  return ([timm.timm_layout(name, num_classes)] if 'timm' in sources else []) + (
      [torchvision.torch_layout(name, num_classes)] if 'torchvision' in sources else [])


_CANDIDATES = {'ours': None, 'flax_imagenet': ('flax_imagenet',), 'big_vision': ('bit',),
               'transformers': ('transformers',), 'torch': ('torchvision', 'timm')}


def _candidates(kind: str, arrays: Mapping) -> list:
  """Registered models with a `kind` counterpart (any model for 'ours') whose blocks per
  stage (the Flax example: block class and count) are those of `arrays`."""
  sources = _CANDIDATES[kind]
  names = registry.list_models() if sources is None else sorted(
      {name for source in sources for name in registry.models_with_source(source)})
  if kind == 'flax_imagenet':
    blocks = {found.groups() for found in map(_EXAMPLE_BLOCK.match, arrays) if found}
    kinds = {block for block, _ in blocks}
    if len(kinds) != 1:
      return []
    block = 'bottleneck' if kinds == {'BottleneckResNetBlock'} else 'basic'
    return [name for name in names
            if registry.model_defaults(name)[1].get('block') == block
            and sum(registry.model_defaults(name)[1].get('stage_sizes', ())) == len(blocks)]
  sizes = stage_sizes(arrays)
  return [name for name in names
          if tuple(registry.model_defaults(name)[1].get('stage_sizes', ())) == sizes]


def _fits(kind: str, name: str, arrays: Mapping, num_classes: int) -> bool:
  from jax_resnet.weights.torch_layout import compare_layout
  try:
    if kind in ('torch', 'transformers'):
      return any(not any(compare_layout(entries, arrays))
                 for entries in _torch_entries(kind, name, num_classes))
    return not any(compare(_expected(kind, name, num_classes), arrays))
  except Exception:  # a family that cannot take this head size
    return False


def guess_model(arrays: Mapping) -> Optional[str]:
  """The one registered model whose layout `arrays` (name -> array or shape) fits exactly, in
  any layout this library reads (module text); None when no model or several fit (resnet20
  and plain20 hold the same arrays: the source must say which)."""
  from jax_resnet.weights.torch_layout import strip_wrapper_prefix
  arrays = strip_wrapper_prefix(arrays)
  kind = layout_kind(arrays)
  if kind == 'ours':
    arrays = {n: v for n, v in arrays.items() if n.startswith(('params/', 'batch_stats/'))}
  num_classes = head_classes(arrays)
  fits = [name for name in _candidates(kind, arrays)
          if _fits(kind, name, arrays, num_classes)]
  return fits[0] if len(fits) == 1 else None
