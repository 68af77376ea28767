"""Pretrained weights: torchvision / timm / BiT / transformers checkpoints in, torch state dicts
out; `jax_resnet.load_pretrained(tag)` fetches and loads a published file in one call.

    from jax_resnet import weights
    variables = weights.load('resnet50', 'model.safetensors')       # or .pth, .npz, a workdir
    logits = jax_resnet.create_model('resnet50').apply(variables, x, train=False)

    variables = weights.from_torchvision('resnet50', torch_model.state_dict())
    state_dict = weights.to_torchvision('resnet50', variables)      # numpy, torchvision names

The Flax ImageNet example's variables or checkpoints (`weights.flax_imagenet`) load into
`create_model(name, padding='same')`: `weights.from_flax_imagenet('resnet50', variables)`,
`weights.load('resnet50', '<its workdir>')`.

Fine-tuning: `merge_pretrained(model.init(...), weights.load(name, path, num_classes=10,
reinit_head=True), reinit_head=True)`.
"""

import importlib
import importlib.resources

from jax_resnet.weights.files import from_state_dict, load, read_safetensors, read_torch
from jax_resnet.weights.npz import read_tag, save_npz
from jax_resnet.weights.flax_imagenet import from_flax_imagenet
from jax_resnet.weights.big_vision import from_big_vision, to_big_vision
from jax_resnet.weights.recognise import guess_model
from jax_resnet.weights.timm import from_timm, to_timm
from jax_resnet.weights.tags import TAGS, WeightTag, default_tag, get_tag, list_tags
from jax_resnet.weights.transformers import from_transformers, to_transformers
from jax_resnet.weights.torchvision import from_torchvision, to_torchvision
from jax_resnet.weights.trees import head_classes
from jax_resnet.weights.trees import (HeadMismatchError, WeightsError, WeightsFileError,
                                      WeightsMismatchError, merge_pretrained)


# Each converter's models, read from the registry rows when asked (a row registered after
# import is in them): the module's own list, e.g. `weights.torchvision.torchvision_models()`.
_CONVERTER_LISTS = {'IMAGE_MODELS': 'torchvision', 'VIDEO_MODELS': 'torchvision',
                    'TORCHVISION_MODELS': 'torchvision', 'TIMM_NAMES': 'timm',
                    'BIG_VISION_MODELS': 'big_vision', 'TRANSFORMERS_MODELS': 'transformers',
                    'FLAX_IMAGENET_MODELS': 'flax_imagenet'}


def __getattr__(name):
  if name in _CONVERTER_LISTS:
    return getattr(importlib.import_module(f'{__name__}.{_CONVERTER_LISTS[name]}'), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def imagenet_classes():
  """The 1000 ImageNet-1k class names in label order (torchvision's list)."""
  text = importlib.resources.files(__name__).joinpath('imagenet_classes.txt').read_text('utf-8')
  return text.splitlines()


__all__ = [
    'BIG_VISION_MODELS', 'FLAX_IMAGENET_MODELS', 'HeadMismatchError', 'IMAGE_MODELS', 'TAGS',
    'TIMM_NAMES', 'TORCHVISION_MODELS', 'TRANSFORMERS_MODELS', 'VIDEO_MODELS', 'WeightTag',
    'WeightsError', 'WeightsFileError', 'WeightsMismatchError', 'default_tag', 'from_big_vision',
    'from_flax_imagenet', 'from_state_dict', 'from_timm', 'from_torchvision', 'from_transformers',
    'get_tag', 'guess_model', 'head_classes', 'imagenet_classes', 'list_tags', 'load',
    'merge_pretrained', 'read_safetensors', 'read_tag', 'read_torch', 'save_npz',
    'to_big_vision', 'to_timm', 'to_torchvision', 'to_transformers',
]
