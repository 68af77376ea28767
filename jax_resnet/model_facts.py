"""What a registered model takes and gives, derived from its registry row and its stem's row
(`stems.STEMS`): `model_info(name)` (native input, classes, minimum input, weight tags) and
`feature_info(name, output_stride)` (the levels of its `return_features` dict)."""

import dataclasses
import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from jax_resnet.errors import ModelError
from jax_resnet.published import published_weights
from jax_resnet.registry import create_model, model_defaults
from jax_resnet.stems import stem_spec
from jax_resnet.video import downsample_strides


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What a registered model takes and gives with its registered options (`model_info`).

  min_input_size is the stem and stages' total spatial downsampling: the smallest side at
  which every stride-2 layer still halves the map (below it the last stages stay 1x1).
  min_num_frames is the same for time (video models; None for images).
  """
  name: str
  family: str                    # 'imagenet' | 'cifar' | 'kinetics': the data the defaults fit
  input_kind: str                # 'image' (N, H, W, C) | 'video' (N, T, H, W, C)
  input_size: int                # native height and width
  num_frames: Optional[int]      # native clip length; None for images
  num_classes: int
  min_input_size: int
  min_num_frames: Optional[int]
  stem: str
  tags: Tuple[str, ...] = ()     # its published weights (`weights.get_tag`), the default first

  @property
  def input_shape(self) -> Tuple[int, ...]:
    """The native input of one example, channels last: (H, W, 3) or (T, H, W, 3)."""
    image = (self.input_size, self.input_size, 3)
    return image if self.num_frames is None else (self.num_frames,) + image

  def feature_info(self, output_stride: int = 32) -> Tuple['FeatureLevel', ...]:
    """`jax_resnet.feature_info(self.name, output_stride)`."""
    return feature_info(self.name, output_stride)


@dataclasses.dataclass(frozen=True)
class FeatureLevel:
  """One feature map of `model.apply(..., return_features=True)`, as timm's feature_info
  describes its levels: the map's key, its channels, and how many times smaller than the
  input its height and width are."""
  name: str                      # 'stem' | 'stage1' ... the key in the features dict
  channels: int
  reduction: int


@functools.lru_cache(maxsize=None)
def feature_info(name: str, output_stride: int = 32) -> Tuple[FeatureLevel, ...]:
  """The spatial levels of image model `name`'s `return_features` dict at `output_stride`, in
  order: 'stem' (after its pooling, reduction 4; CIFAR stems 1) and each stage. Read from the
  model itself (an abstract forward pass, jax.eval_shape), so they are what it returns."""
  info = model_info(name)
  if info.input_kind != 'image':
    raise ModelError(f'feature_info describes image models; {name} takes video clips.')
  model = create_model(name, output_stride=output_stride)
  side = 2 * info.min_input_size  # a multiple of every reduction
  x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  forward = lambda key, x: model.init_with_output(key, x, train=False,
                                                  return_features=True)[0]
  features = jax.eval_shape(forward, jax.random.key(0), x)  # a dict, its keys sorted
  names = ['stem'] + [f'stage{i}' for i in range(1, len(model.stage_sizes) + 1)]
  return tuple(FeatureLevel(key, features[key].shape[-1], side // features[key].shape[1])
               for key in names)


def model_info(name: str) -> ModelInfo:
  """The input kind, native input, classes, minimum input and weight tags (the default first)
  of registered model `name`, derived from its registry row and its stem's `stems.STEMS` row."""
  cls, defaults = model_defaults(name)
  option = lambda key: defaults[key] if key in defaults else getattr(cls, key)
  stem, stages = stem_spec(option('stem')), len(option('stage_sizes'))
  # The stem's reduction, times 2 for each stage after the first (ImageNet: 4 * 8 = 32).
  min_size = stem.reduction * 2 ** (stages - 1)
  min_frames = None
  if cls.input_kind == 'video':  # later stages halve time unless 'no temporal' (2d)
    min_frames = math.prod(downsample_strides(t, 2)[0] for t in option('conv_types')[1:])
  return ModelInfo(name=name, family=stem.family, input_kind=cls.input_kind,
                   input_size=stem.input_size, num_frames=stem.num_frames,
                   num_classes=option('num_classes'), min_input_size=min_size,
                   min_num_frames=min_frames, stem=stem.name,
                   tags=tuple(tag.name for tag in published_weights(name)))
