"""One registry of named models (timm's `create_model` idiom): each variant is one row."""

import dataclasses
import difflib
import fnmatch
import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from jax_resnet.layers import SHORTCUT_TYPES
from jax_resnet.models import STEM_REDUCTION, ResNet, stage_plan
from jax_resnet.stems import check_padding, check_stem_conv
from jax_resnet.video import VideoResNet, check_video_output_stride, downsample_strides

_REGISTRY = {}

_IMAGENET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                    152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
_CIFAR = dict(stem='cifar', stem_width=16, stage_widths=(16, 32, 64), num_classes=10)


def _register(name, cls, **defaults):
  if name in _REGISTRY:  # a second row would silently replace the first
    raise ValueError(f'model {name!r} is registered twice.')
  _REGISTRY[name] = (cls, defaults)


def _imagenet_block(depth):
  return 'basic' if depth < 50 else 'bottleneck'


for _depth, _stages in _IMAGENET_STAGES.items():
  _register(f'resnet{_depth}', ResNet, block=_imagenet_block(_depth), stage_sizes=_stages)
  _register(f'preact_resnet{_depth}', ResNet, block=_imagenet_block(_depth), stage_sizes=_stages,
            preact=True)
for _depth in (18, 34):
  _register(f'plain{_depth}', ResNet, block='basic', stage_sizes=_IMAGENET_STAGES[_depth],
            residual=False)

_register('wide_resnet50_2', ResNet, block='bottleneck', stage_sizes=(3, 4, 6, 3), base_width=128)
_register('wide_resnet101_2', ResNet, block='bottleneck', stage_sizes=(3, 4, 23, 3),
          base_width=128)
_register('resnext50_32x4d', ResNet, block='bottleneck', stage_sizes=(3, 4, 6, 3), groups=32,
          base_width=4)
_register('resnext101_32x8d', ResNet, block='bottleneck', stage_sizes=(3, 4, 23, 3), groups=32,
          base_width=8)
_register('resnext101_64x4d', ResNet, block='bottleneck', stage_sizes=(3, 4, 23, 3), groups=64,
          base_width=4)

# He et al. 2015 §4.2: depth 6n+2, option A shortcuts; the plain twins drop the shortcut.
for _depth in (20, 32, 44, 56, 110, 1202):
  _n = (_depth - 2) // 6
  _register(f'resnet{_depth}', ResNet, block='basic', stage_sizes=(_n,) * 3, shortcut='A',
            **_CIFAR)
  if _depth <= 110:
    _register(f'plain{_depth}', ResNet, block='basic', stage_sizes=(_n,) * 3, shortcut='A',
              residual=False, **_CIFAR)

# He et al. 2016 (pre-activation) CIFAR nets: 110 basic (6n+2), 164/1001 bottleneck (9n+2).
_register('preact_resnet110', ResNet, block='basic', stage_sizes=(18,) * 3, preact=True, **_CIFAR)
_register('preact_resnet164', ResNet, block='bottleneck', stage_sizes=(18,) * 3, preact=True,
          **_CIFAR)
_register('preact_resnet1001', ResNet, block='bottleneck', stage_sizes=(111,) * 3, preact=True,
          **_CIFAR)

# Zagoruyko & Komodakis 2016: WRN-d-k, pre-activation basic blocks, (d-4)/6 per stage.
for _depth, _k in ((16, 4), (16, 8), (28, 10), (40, 4)):
  _register(f'wrn{_depth}_{_k}', ResNet, block='basic', stage_sizes=((_depth - 4) // 6,) * 3,
            preact=True, **{**_CIFAR, 'stage_widths': (16 * _k, 32 * _k, 64 * _k)})

# He et al. 2019 ("Bag of Tricks") ResNet-D as timm defines it: the deep 3x3 stem and the
# average-pool shortcut; resnet26 (timm's) is the bottleneck net of two blocks per stage.
_STAGES_26 = (2, 2, 2, 2)
_register('resnet26', ResNet, block='bottleneck', stage_sizes=_STAGES_26)
for _depth, _stages in (*_IMAGENET_STAGES.items(), (26, _STAGES_26)):
  _register(f'resnet{_depth}d', ResNet, block='basic' if _depth in (18, 34) else 'bottleneck',
            stage_sizes=_stages, stem='deep', avg_down=True)

# Kolesnikov et al. 2020 (BiT, "Big Transfer"): pre-activation bottleneck nets with GroupNorm and
# Weight Standardization, every width times k ('resnet50x3': k = 3), timm's resnetv2_*_bit.
for _depth, _k in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4)):
  _register(f'bit_resnet{_depth}x{_k}', ResNet, block='bottleneck',
            stage_sizes=_IMAGENET_STAGES[_depth], preact=True, stem='bit', norm='group',
            weight_standardization=True, stem_width=64 * _k,
            stage_widths=tuple(64 * _k * m for m in (1, 2, 4, 8)))

_register('r3d_18', VideoResNet, conv_types=('3d',) * 4, stem='basic')
_register('mc3_18', VideoResNet, conv_types=('3d', '2d', '2d', '2d'), stem='basic')
_register('r2plus1d_18', VideoResNet, conv_types=('2+1d',) * 4, stem='r2plus1d')


# Each family's published counterparts, by library: torchvision's and timm's model names, BiT's
# release checkpoints (BiT-M-R50x1...), transformers' Hub repositories (microsoft/resnet-<depth>,
# whose ResNetConfig has this row's block and stage sizes). The weights converters list their
# models from here, and weight tags find their model by these names.
_SOURCES = {}
SOURCE_KINDS = ('torchvision', 'timm', 'bit', 'transformers')


def _sources(name, **sources):
  if name not in _REGISTRY or name in _SOURCES or set(sources) - set(SOURCE_KINDS):
    raise ValueError(f'sources of {name!r}: the model must be registered, listed once, with '
                     f'kinds among {SOURCE_KINDS}.')
  _SOURCES[name] = sources


for _depth in (18, 34, 50, 101, 152):
  _sources(f'resnet{_depth}', torchvision=f'resnet{_depth}', timm=f'resnet{_depth}',
           transformers=f'microsoft/resnet-{_depth}')
_sources('resnet26', timm='resnet26', transformers='microsoft/resnet-26')
_sources('resnet200', timm='resnet200')
for _name in ('wide_resnet50_2', 'wide_resnet101_2', 'resnext50_32x4d', 'resnext101_32x8d',
              'resnext101_64x4d'):
  _sources(_name, torchvision=_name, timm=_name)
for _depth in (18, 26, 34, 50, 101, 152, 200):
  _sources(f'resnet{_depth}d', timm=f'resnet{_depth}d')
_sources('preact_resnet50', timm='resnetv2_50')
_sources('preact_resnet101', timm='resnetv2_101')
for _depth, _k in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4)):
  _sources(f'bit_resnet{_depth}x{_k}', timm=f'resnetv2_{_depth}x{_k}_bit',
           bit=f'BiT-M-R{_depth}x{_k}')
for _name in ('r3d_18', 'mc3_18', 'r2plus1d_18'):
  _sources(_name, torchvision=_name)


def model_sources(name: str) -> dict:
  """{library: its name} of registered model `name`'s published counterparts (may be empty)."""
  model_defaults(name)  # unknown names: the error with close matches
  return dict(_SOURCES.get(name, {}))


def models_with_source(kind: str) -> tuple:
  """Registered names that `kind` ('torchvision', 'timm', 'bit', 'transformers') publishes,
  in the order of their rows."""
  return tuple(name for name, sources in _SOURCES.items() if kind in sources)


def model_for_source(kind: str, their_name: str) -> str:
  """The registered name whose `kind` counterpart is `their_name` ('resnetv2_50' ->
  'preact_resnet50'); ValueError if none."""
  for name, sources in _SOURCES.items():
    if sources.get(kind) == their_name:
      return name
  raise ValueError(f'no registered model is {kind}\'s {their_name!r}; those with one: '
                   f'{", ".join(models_with_source(kind))}.')


def list_models(pattern: str = '*'):
  """Sorted names of the registered models, filtered by a shell-style pattern."""
  return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_defaults(name: str):
  """The module class and the keyword arguments that define model `name`."""
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise ValueError(f'Unknown model {name!r}.{hint} jax_resnet.list_models() lists all '
                     f'{len(_REGISTRY)}.')
  cls, defaults = _REGISTRY[name]
  return cls, dict(defaults)


# The data each registered stem was designed for, and its native input: ImageNet's 224x224 crops
# (He et al. 2015), CIFAR's 32x32 images (He et al. 2015, section 4.2), Kinetics-400 clips of 16
# frames at 112x112 (Tran et al. 2018; torchvision's video weights use clip_len=16).
_STEM_FAMILY = {'imagenet': 'imagenet', 'deep': 'imagenet', 'bit': 'imagenet',
                'cifar': 'cifar', 'basic': 'kinetics', 'r2plus1d': 'kinetics'}
_FAMILY_INPUT = {'imagenet': (224, None), 'cifar': (32, None), 'kinetics': (112, 16)}


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
    raise ValueError(f'feature_info describes image models; {name} takes video clips.')
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
  """The input kind, native input, classes and minimum input of registered model `name`,
  derived from its registry row."""
  cls, defaults = model_defaults(name)
  option = lambda key: defaults[key] if key in defaults else getattr(cls, key)
  stem, stages = option('stem'), len(option('stage_sizes'))
  family = _STEM_FAMILY[stem]
  input_size, num_frames = _FAMILY_INPUT[family]
  if cls.input_kind == 'video':
    # Both video stems stride (1, 2, 2); later stages halve time unless 'no temporal' (2d).
    min_size = 2 * 2 ** (stages - 1)
    min_frames = math.prod(downsample_strides(t, 2)[0] for t in option('conv_types')[1:])
  else:
    # The ImageNet, deep and BiT stems' stride-2 convolution and 3x3/2 max pool; the CIFAR
    # stem keeps the size.
    min_size, min_frames = STEM_REDUCTION[stem] * 2 ** (stages - 1), None
  return ModelInfo(name=name, family=family, input_kind=cls.input_kind, input_size=input_size,
                   num_frames=num_frames, num_classes=option('num_classes'),
                   min_input_size=min_size, min_num_frames=min_frames, stem=stem)


def create_model(name: str, **overrides):
  """Builds the flax.linen module registered as `name`, with options overridden.

  Options every model takes: num_classes, dtype, param_dtype, zero_init_residual,
  drop_path_rate, bn_axis_name, shortcut, freeze_batch_norm, conv1x1_as_dot, norm ('batch' |
  'group'), weight_standardization (plus residual_scale, and dropout_rate for Wide ResNet).
  GroupNorm models (norm='group': the BiT rows) keep no batch statistics, so bn_axis_name,
  freeze_batch_norm and bn_momentum change nothing in them and their variables hold 'params'
  only. Image models with a 7x7/2 stem ('imagenet', 'bit') also take stem_conv ('conv' |
  'pad_channels' | 'space_to_depth': that convolution computed another way, same weights;
  `jax_resnet.stems`); the deep 3x3 stem (ResNet-D) takes 'conv' only. The ImageNet-style
  image models ('imagenet', 'deep', 'bit' stems) take padding ('torch': k//2 per side, the
  default | 'same': strided convolutions and the stem's max pool pad as XLA's 'SAME', the Flax
  ImageNet example's model; same parameters).
  Image models take output_stride (32; 16 or 8 dilate the last stages, `models.stage_plan`);
  CIFAR and video nets refuse values they cannot honour.
  Dtypes may be given as names ('bfloat16').
  """
  cls, kwargs = model_defaults(name)
  fields = sorted(f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name'))
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise TypeError(f'create_model({name!r}) got unknown option(s) {", ".join(unknown)}; '
                    f'valid options: {", ".join(fields)}.')
  kwargs.update(overrides)
  for key in ('dtype', 'param_dtype'):
    if key in kwargs:
      kwargs[key] = jnp.dtype(kwargs[key])
  _validate(name, kwargs)
  _check_output_stride(name, cls, kwargs)
  return cls(**kwargs)


def _check_output_stride(name, cls, kwargs):
  """The output_stride refusals at creation, in one line naming the model."""
  output_stride = kwargs.get('output_stride', 32)
  try:
    if cls is VideoResNet:
      check_video_output_stride(output_stride)
    else:
      stages = len(kwargs.get('stage_sizes', ()))
      stage_plan(STEM_REDUCTION.get(kwargs.get('stem', cls.stem), 4), stages, output_stride)
  except ValueError as error:
    raise ValueError(f'{name}: {error}') from None


def _validate(name, kwargs):
  if kwargs.get('shortcut', 'B') not in SHORTCUT_TYPES:
    raise ValueError(f'{name}: shortcut must be one of {", ".join(SHORTCUT_TYPES)}, '
                     f'got {kwargs["shortcut"]!r}.')
  if kwargs.get('norm', 'batch') not in ('batch', 'group'):
    raise ValueError(f"{name}: norm must be 'batch' or 'group', got {kwargs['norm']!r}.")
  rate = kwargs.get('drop_path_rate', 0.0)
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'{name}: drop_path_rate must be in [0, 1), got {rate}.')
  for key, check in (('stem_conv', check_stem_conv), ('padding', check_padding)):
    if key in kwargs:
      try:
        check(kwargs[key], kwargs.get('stem', 'imagenet'))
      except ValueError as error:
        raise ValueError(f'{name}: {error}') from None
  if kwargs.get('num_classes', 0) < 0:
    raise ValueError(f'{name}: num_classes must be >= 0 (0 drops the head), '
                     f'got {kwargs["num_classes"]}.')
