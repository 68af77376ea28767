"""One registry of named models (timm's `create_model` idiom): each variant is one row."""

import dataclasses
import difflib
import fnmatch
import math
from typing import Optional, Tuple

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
# (its ResNet50... for `padding='same'`). The weights converters list their models from here,
# and weight tags find their model by these names.
_SOURCES = {}
SOURCE_KINDS = ('torchvision', 'timm', 'bit', 'transformers', 'flax_imagenet')


def _sources(name, **sources):
  if name not in _REGISTRY or name in _SOURCES or set(sources) - set(SOURCE_KINDS):
    raise ValueError(f'sources of {name!r}: the model must be registered, listed once, with '
                     f'kinds among {SOURCE_KINDS}.')
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


# Each row's published weights files (timm's pretrained configs sit with their models the same
# way). `weights.tags` turns each into a WeightTag: it owns the hosts' URLs, the licence texts
# and the mean/std behind a normalization's name.
@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
  """One published weights file of a registry row. Its tag is '<model>.<weights>': timm's name
  of the row for timm's files (they are timm's tags), ours for torchvision's (the same names)
  and BiT's."""
  tag: str
  model: str                       # the registry row
  source: str                      # 'torchvision' | 'timm' | 'big_vision': host and reader
  file: str                        # its name on torchvision's or BiT's host; timm: the Hub repo
  licence: str                     # 'torchvision' | 'timm' | 'bit' | 'kinetics'
  top1: float                      # the publisher's top-1 (%) at this preprocessing
  crop: int                        # square input fed to the model
  resize: int                      # shorter side before the centre crop
  interpolation: str = 'bilinear'  # 'bilinear' | 'bicubic' (PIL filters, antialiased)
  normalization: str = 'imagenet'  # 'imagenet' | 'inception' ([-1, 1]) | 'kinetics'
  size_mb: Optional[float] = None  # the file's size in MB (10**6 bytes), as published
  num_classes: int = 1000
  dataset: str = 'ImageNet-1k'     # where top1 was measured


_PRETRAINED = {}  # tag -> PretrainedCfg, in the order the rows list them
PRETRAINED_SOURCES = ('torchvision', 'timm', 'big_vision')


def _pretrained(name, weights, source, **facts):
  if name not in _SOURCES or source not in PRETRAINED_SOURCES:
    raise ValueError(f'weights of {name!r}: the model needs its sources row, and the source '
                     f'must be one of {PRETRAINED_SOURCES}.')
  tag = f'{_SOURCES[name]["timm"] if source == "timm" else name}.{weights}'
  if tag in _PRETRAINED:
    raise ValueError(f'weight tag {tag!r} is listed twice.')
  _PRETRAINED[tag] = PretrainedCfg(tag, name, source, **facts)


def _torchvision_weights(name, version, file, top1, size_mb):
  """torchvision's IMAGENET1K_V1 (resize 256) and V2 (resize 232) weights; timm re-hosts them
  as `<model>.tv_in1k` / `<model>.tv2_in1k`. size_mb: torchvision's meta `_file_size`."""
  resize = 256 if version == 1 and name != 'resnext101_64x4d' else 232
  _pretrained(name, 'tv_in1k' if version == 1 else 'tv2_in1k', 'torchvision', file=file,
              licence='torchvision', top1=top1, crop=224, resize=resize, size_mb=size_mb)


def _kinetics_weights(name, file, top1, size_mb):
  """torchvision's KINETICS400_V1 video weights: frames resized to 128x171, centre crop 112."""
  _pretrained(name, 'tv_kinetics400', 'torchvision', file=file, licence='kinetics', top1=top1,
              crop=112, resize=128, normalization='kinetics', size_mb=size_mb,
              num_classes=400, dataset='Kinetics-400')


def _timm_weights(name, weights, top1, size, crop_pct, **facts):
  """timm's eval transform: resize the shorter side to floor(size / crop_pct), crop size."""
  facts = {'interpolation': 'bicubic', 'licence': 'timm', **facts}
  _pretrained(name, weights, 'timm', file=f'timm/{_SOURCES[name]["timm"]}.{weights}',
              top1=top1, crop=size, resize=math.floor(size / crop_pct), **facts)


for _args in (
    ('resnet18', 1, 'resnet18-f37072fd.pth', 69.758, 44.661),
    ('resnet34', 1, 'resnet34-b627a593.pth', 73.314, 83.275),
    ('resnet50', 1, 'resnet50-0676ba61.pth', 76.130, 97.781),
    ('resnet50', 2, 'resnet50-11ad3fa6.pth', 80.858, 97.79),
    ('resnet101', 1, 'resnet101-63fe2227.pth', 77.374, 170.511),
    ('resnet101', 2, 'resnet101-cd907fc2.pth', 81.886, 170.53),
    ('resnet152', 1, 'resnet152-394f9c45.pth', 78.312, 230.434),
    ('resnet152', 2, 'resnet152-f82ba261.pth', 82.284, 230.474),
    ('resnext50_32x4d', 1, 'resnext50_32x4d-7cdf4587.pth', 77.618, 95.789),
    ('resnext50_32x4d', 2, 'resnext50_32x4d-1a0047aa.pth', 81.198, 95.833),
    ('resnext101_32x8d', 1, 'resnext101_32x8d-8ba56ff5.pth', 79.312, 339.586),
    ('resnext101_32x8d', 2, 'resnext101_32x8d-110c445d.pth', 82.834, 339.673),
    ('resnext101_64x4d', 1, 'resnext101_64x4d-173b62eb.pth', 83.246, 319.318),
    ('wide_resnet50_2', 1, 'wide_resnet50_2-95faca4d.pth', 78.468, 131.82),
    ('wide_resnet50_2', 2, 'wide_resnet50_2-9ba9bcbe.pth', 81.602, 263.124),
    ('wide_resnet101_2', 1, 'wide_resnet101_2-32ee1156.pth', 78.848, 242.896),
    ('wide_resnet101_2', 2, 'wide_resnet101_2-d733dc28.pth', 82.510, 484.747)):
  _torchvision_weights(*_args)
for _args in (('r3d_18', 'r3d_18-b3b3357e.pth', 63.200, 127.359),
              ('mc3_18', 'mc3_18-a90a0ba3.pth', 63.960, 44.672),
              ('r2plus1d_18', 'r2plus1d_18-91a641e6.pth', 67.463, 120.318)):
  _kinetics_weights(*_args)
# timm's tags at the resolution and crop of its published results (results-imagenet.csv).
for _args in (
    ('resnet18', 'a1_in1k', 73.158, 288, 1.0), ('resnet34', 'a1_in1k', 77.918, 288, 1.0),
    ('resnet50', 'a1_in1k', 81.214, 288, 1.0), ('resnet50', 'a1h_in1k', 80.676, 224, 1.0),
    ('resnet101', 'a1h_in1k', 82.778, 288, 1.0), ('resnet152', 'a1h_in1k', 83.450, 288, 1.0),
    ('resnet26', 'bt_in1k', 76.366, 288, 0.95), ('resnet26d', 'bt_in1k', 77.408, 288, 0.95),
    ('resnet18d', 'ra2_in1k', 73.794, 288, 0.95), ('resnet34d', 'ra2_in1k', 78.436, 288, 0.95),
    ('resnet50d', 'ra2_in1k', 81.356, 288, 0.95), ('resnet50d', 'a1_in1k', 81.450, 288, 1.0),
    ('resnet101d', 'ra2_in1k', 83.016, 320, 1.0), ('resnet152d', 'ra2_in1k', 83.684, 320, 1.0),
    ('resnet200d', 'ra2_in1k', 83.964, 320, 1.0)):
  _timm_weights(*_args)
_timm_weights('preact_resnet50', 'a1h_in1k', 81.398, 288, 1.0, normalization='inception')
_timm_weights('preact_resnet101', 'a1h_in1k', 83.002, 288, 1.0, normalization='inception')
# BiT-M (ImageNet-21k, fine-tuned on ImageNet-1k): timm's copies, then the BiT authors' own
# .npz files with timm's top-1 and preprocessing for the same weights.
_BIT_M = {'bit_resnet50x1': (80.340, 448), 'bit_resnet50x3': (84.020, 448),
          'bit_resnet101x1': (82.342, 448), 'bit_resnet101x3': (84.438, 448),
          'bit_resnet152x2': (84.510, 448), 'bit_resnet152x4': (84.916, 480)}
_BIT = dict(interpolation='bilinear', normalization='inception', licence='bit')
for _name, (_top1, _size) in _BIT_M.items():
  _timm_weights(_name, 'goog_in21k_ft_in1k', _top1, _size, 1.0, **_BIT)
for _name, (_top1, _size) in _BIT_M.items():
  _pretrained(_name, 'bit_m_in21k_ft_in1k', 'big_vision', top1=_top1, crop=_size, resize=_size,
              file=f'{_SOURCES[_name]["bit"]}-ILSVRC2012.npz', **_BIT)


def pretrained_cfgs(name: Optional[str] = None) -> Tuple[PretrainedCfg, ...]:
  """The published weights files of every row (in the rows' order), or of model `name` with
  its default first: the highest top-1 (ties: the first listed, a Hub copy before BiT's .npz)."""
  if name is None:
    return tuple(_PRETRAINED.values())
  model_defaults(name)  # unknown names: the error with close matches
  cfgs = [cfg for cfg in _PRETRAINED.values() if cfg.model == name]
  if not cfgs:
    return ()
  best = max(cfgs, key=lambda cfg: cfg.top1)
  return (best,) + tuple(cfg for cfg in cfgs if cfg is not best)


def model_sources(name: str) -> dict:
  """{library: its name} of registered model `name`'s published counterparts (may be empty)."""
  model_defaults(name)  # unknown names: the error with close matches
  return dict(_SOURCES.get(name, {}))


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
