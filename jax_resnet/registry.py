"""One registry of named models (timm's `create_model` idiom): each variant is one row."""

import dataclasses
import difflib
import fnmatch
from typing import Mapping, Optional, Sequence

import jax.numpy as jnp

from jax_resnet.errors import ModelError
from jax_resnet.layers import check_shortcut
from jax_resnet.models import ResNet, check_norm, stage_plan
from jax_resnet.remat import check_remat
from jax_resnet.stems import check_padding, check_stem_conv, stem_spec
from jax_resnet.video import VideoResNet, check_video_output_stride

_REGISTRY = {}

_IMAGENET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                    152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
_CIFAR = dict(stem='cifar', stem_width=16, stage_widths=(16, 32, 64), num_classes=10)


def _register(name, cls, **defaults):
  if name in _REGISTRY:  # a second row would silently replace the first
    raise ValueError(f'model {name!r} is registered twice; register_model takes a name not in '
                     'jax_resnet.list_models().')
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
_BIT_SIZES = ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4))  # (depth, k)
for _depth, _k in _BIT_SIZES:
  _register(f'bit_resnet{_depth}x{_k}', ResNet, block='bottleneck',
            stage_sizes=_IMAGENET_STAGES[_depth], preact=True, stem='bit', norm='group',
            weight_standardization=True, stem_width=64 * _k,
            stage_widths=tuple(64 * _k * m for m in (1, 2, 4, 8)))

_register('r3d_18', VideoResNet, conv_types=('3d',) * 4, stem='basic')
_register('mc3_18', VideoResNet, conv_types=('3d', '2d', '2d', '2d'), stem='basic')
_register('r2plus1d_18', VideoResNet, conv_types=('2+1d',) * 4, stem='r2plus1d')


# Each family's published counterparts, by library: torchvision's and timm's model names, BiT's
# release checkpoints (BiT-M-R50x1...), transformers' Hub repositories (microsoft/resnet-<depth>,
# whose ResNetConfig has this row's block and stage sizes), the Flax ImageNet example's classes
# (its ResNet50... for `padding='same'`). The weights converters list their models from here
# when asked, and weight tags find their model by these names; `jax_resnet.published` holds
# the published files of these rows.
_SOURCES = {}
SOURCE_KINDS = ('torchvision', 'timm', 'bit', 'transformers', 'flax_imagenet')


def _check_sources(name, sources, registered=True):
  if not registered or name in _SOURCES or set(sources) - set(SOURCE_KINDS) or not all(
      isinstance(theirs, str) and theirs for theirs in sources.values()):
    raise ValueError(f'sources of {name!r}: the model must be registered, listed once, with '
                     f'kinds among {SOURCE_KINDS}, each naming its counterpart.')


def _sources(name, **sources):
  _check_sources(name, sources, registered=name in _REGISTRY)
  _SOURCES[name] = sources


for _depth in (18, 34, 50, 101, 152):
  _sources(f'resnet{_depth}', torchvision=f'resnet{_depth}', timm=f'resnet{_depth}',
           transformers=f'microsoft/resnet-{_depth}', flax_imagenet=f'ResNet{_depth}')
_sources('resnet26', timm='resnet26', transformers='microsoft/resnet-26')
_sources('resnet200', timm='resnet200', flax_imagenet='ResNet200')
for _name in ('wide_resnet50_2', 'wide_resnet101_2', 'resnext50_32x4d', 'resnext101_32x8d',
              'resnext101_64x4d'):
  _sources(_name, torchvision=_name, timm=_name)
for _depth in (18, 26, 34, 50, 101, 152, 200):
  _sources(f'resnet{_depth}d', timm=f'resnet{_depth}d')
_sources('preact_resnet50', timm='resnetv2_50')
_sources('preact_resnet101', timm='resnetv2_101')
for _depth, _k in _BIT_SIZES:
  _sources(f'bit_resnet{_depth}x{_k}', timm=f'resnetv2_{_depth}x{_k}_bit',
           bit=f'BiT-M-R{_depth}x{_k}')
for _name in ('r3d_18', 'mc3_18', 'r2plus1d_18'):
  _sources(_name, torchvision=_name)


def register_model(name: str, cls=ResNet, *, sources: Optional[Mapping[str, str]] = None,
                   weights: Sequence = (), **defaults):
  """Adds model `name` to the registry, as the package's own rows are added: `cls` (ResNet or
  VideoResNet) with `defaults` (its `create_model` options), `sources` ({kind: their name}
  for kinds among SOURCE_KINDS: the converters whose layout it has), `weights` (its published
  files, `jax_resnet.weights.WeightTag` records whose `model` is `name`). Every lookup,
  converter, `model_info` and `load_pretrained` then serves it. Everything is checked before
  anything is added: a name registered already, an option `cls` lacks or refuses, an unknown
  source kind, or a weight record that does not fit is one ValueError (TypeError for an
  unknown option) and leaves the registry as it was."""
  from jax_resnet import published
  if not isinstance(name, str) or not name:
    raise ValueError(f'register_model: the name must be a non-empty string, got {name!r}.')
  if name in _REGISTRY:
    raise ValueError(f'model {name!r} is registered twice; register_model takes a name not in '
                     'jax_resnet.list_models().')
  if not (isinstance(cls, type) and issubclass(cls, (ResNet, VideoResNet))):
    raise ValueError(f'register_model({name!r}): cls must be jax_resnet.models.ResNet or '
                     f'jax_resnet.video.VideoResNet (or a subclass), got {cls!r}.')
  _check_options(name, cls, defaults)
  kwargs = dict(defaults)
  _validate(name, kwargs)
  _check_output_stride(name, cls, kwargs)
  sources = dict(sources or {})
  _check_sources(name, sources)
  weights = tuple(weights)
  for tag in weights:
    published.check_weights(tag, model=name)
    kind = published.SOURCE_KIND[tag.source]
    if kind not in sources:  # the tag's source picks the converter that reads its file
      raise ValueError(f'weight tag {tag.name!r} is published by {tag.source}, whose layout '
                       f'needs sources={{{kind!r}: ...}} in the row of {name!r}.')
  if len({tag.name for tag in weights}) != len(weights):
    raise ValueError(f'register_model({name!r}): a weight tag is listed twice in weights.')
  _REGISTRY[name] = (cls, defaults)
  if sources:
    _SOURCES[name] = sources
  for tag in weights:
    published.add_weights(tag)


def _check_options(name, cls, options):
  fields = sorted(f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name'))
  unknown = sorted(set(options) - set(fields))
  if unknown:
    raise TypeError(f'create_model({name!r}) got unknown option(s) {", ".join(unknown)}; '
                    f'valid options: {", ".join(fields)}.')


def model_sources(name: str) -> dict:
  """{library: its name} of registered model `name`'s published counterparts (may be empty)."""
  model_defaults(name)  # unknown names: the error with close matches
  return dict(_SOURCES.get(name, {}))


def listed_when_asked(module_name: str, **lists):
  """A module `__getattr__` (PEP 562) that serves each constant of `lists` (name -> function
  of no arguments) by calling its function on every access, so a row registered after import
  is in it. The converters' model lists (`TIMM_NAMES`, `IMAGE_MODELS`, ...) are these."""
  def module_getattr(name):
    if name in lists:
      return lists[name]()
    raise AttributeError(f'module {module_name!r} has no attribute {name!r}')
  return module_getattr


def models_with_source(kind: str) -> tuple:
  """Registered names that `kind` (one of SOURCE_KINDS) publishes, in the order of their
  rows."""
  return tuple(name for name, sources in _SOURCES.items() if kind in sources)


def model_for_source(kind: str, their_name: str) -> str:
  """The registered name whose `kind` counterpart is `their_name` ('resnetv2_50' ->
  'preact_resnet50'); ModelError if none."""
  for name, sources in _SOURCES.items():
    if sources.get(kind) == their_name:
      return name
  raise ModelError(f'no registered model is {kind}\'s {their_name!r}; those with one: '
                   f'{", ".join(models_with_source(kind))}.')


def list_models(pattern: str = '*'):
  """Sorted names of the registered models, filtered by a shell-style pattern."""
  return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_defaults(name: str):
  """The module class and the keyword arguments that define model `name`."""
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    raise ModelError(f'Unknown model {name!r}.{hint} jax_resnet.list_models() lists all '
                     f'{len(_REGISTRY)}.')
  cls, defaults = _REGISTRY[name]
  return cls, dict(defaults)


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
  Every model takes remat ('none' | 'block' | 'save_convs': what the backward pass recomputes
  of each residual block, `jax_resnet.remat`). Dtypes may be given as names ('bfloat16').
  """
  cls, kwargs = model_defaults(name)
  _check_options(name, cls, overrides)
  kwargs.update(overrides)
  for key in ('dtype', 'param_dtype'):
    if key in kwargs:
      kwargs[key] = jnp.dtype(kwargs[key])
  _validate(name, kwargs)
  _check_output_stride(name, cls, kwargs)
  return cls(**kwargs)


def _check_output_stride(name, cls, kwargs):
  """The stem and output_stride refusals at creation, in one line naming the model."""
  output_stride = kwargs.get('output_stride', 32)
  try:
    stem_spec(kwargs.get('stem', cls.stem), cls.input_kind)
    if cls is VideoResNet:
      check_video_output_stride(output_stride)
    else:
      stages = len(kwargs.get('stage_sizes', ()))
      stage_plan(stem_spec(kwargs.get('stem', cls.stem)).reduction, stages, output_stride)
  except ModelError as error:
    raise _named(name, error) from None


def _named(name, error):
  """The model library's refusal, its type and choices kept, with the model's name first."""
  return type(error)(f'{name}: {error}', choices=error.choices)


def _validate(name, kwargs):
  """Each option's own check (by the function that owns the option), naming the model."""
  stem = kwargs.get('stem', 'imagenet')
  rate = kwargs.get('drop_path_rate', 0.0)
  try:
    for key, check in (('shortcut', check_shortcut), ('norm', check_norm),
                       ('remat', check_remat)):
      if key in kwargs:
        check(kwargs[key])
    if not 0.0 <= rate < 1.0:
      raise ModelError(f'drop_path_rate must be in [0, 1), got {rate}.')
    for key, check in (('stem_conv', check_stem_conv), ('padding', check_padding)):
      if key in kwargs:
        check(kwargs[key], stem)
    if kwargs.get('num_classes', 0) < 0:
      raise ModelError(f'num_classes must be >= 0 (0 drops the head), '
                       f'got {kwargs["num_classes"]}.')
  except ModelError as error:
    raise _named(name, error) from None
