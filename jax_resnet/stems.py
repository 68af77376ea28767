"""The stems: one table (`STEMS`) of each stem's facts, and the layers that build them; plus
exact alternative computations of the ImageNet stem's 7x7/2 convolution (`stem_conv`).

Each `Stem` row says how much the stem reduces height and width, the data and native input it
was designed for, which options apply to it (stem_conv, padding='same'), its layer names in
the torch layouts, and the function that builds it. models.py, video.py, the registry's
`model_info` and the weights converters read the row; nothing else compares stem names.

stem_conv: every option keeps the parameter `conv_init/kernel` (7, 7, 3, 64) and computes the
same convolution (torch-style symmetric padding 3) up to float round-off; only the shape of the
work handed to the backend's convolution changes, so weights and checkpoints are shared:

  'conv'            the plain convolution on the 3-channel image (the default).
  'pad_channels'    image and kernel zero-padded from 3 to 4 input channels. XLA:GPU pads
                    exactly this convolution (3 input features, 32 or 64 outputs) to 4 itself
                    for float16, but not for bfloat16 (xla/service/gpu/transforms/
                    cudnn_pad_for_convolutions.cc returns early for any type but F16); this
                    gives bfloat16 the shape XLA picks for float16. 4 rather than 8: the 8
                    that tensor cores prefer elsewhere would be 2.7x the input bytes, more than
                    the 1.35x that pass allows itself.
  'space_to_depth'  the stride-2 convolution as a stride-1 4x4 convolution over 2x2 blocks of
                    the padded image (12 channels), the kernel rearranged on the fly; the
                    space-to-depth stem of Google's MLPerf ResNet-50 TPU submissions, done here
                    inside the model so the stored kernel stays (7, 7, 3, 64).
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_resnet.errors import ModelError, OptionError
from jax_resnet import layers
from jax_resnet.layers import he_normal_fan_out, same_padding, weight_standardized, window_pads

STEM_CONVS = ('conv', 'pad_channels', 'space_to_depth')
CHANNEL_MULTIPLE = 4
_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def _quoted(names) -> str:
  """('a', 'b', 'c') -> "'a', 'b' or 'c'"."""
  names = [repr(name) for name in names]
  return names[0] if len(names) == 1 else f'{", ".join(names[:-1])} or {names[-1]}'


def stem_spec(stem: str, input_kind: Optional[str] = None) -> 'Stem':
  """The `STEMS` row of `stem`; OptionError naming the stems of `input_kind` ('image' |
  'video'; None: all) when there is none."""
  spec = STEMS.get(stem)
  if spec is None or input_kind not in (None, spec.input_kind):
    names = [name for name, row in STEMS.items() if input_kind in (None, row.input_kind)]
    raise OptionError(f'stem must be {_quoted(names)}, got {stem!r}.', choices=names)
  return spec


def check_stem_conv(stem_conv: str, stem: str = 'imagenet'):
  """One clear error for a value the 7x7/2 stems cannot take, or for a non-default value on a
  stem it does not apply to (the CIFAR 3x3/1 and the deep 3x3 stems have no 7x7 to compute
  another way)."""
  if stem_conv not in STEM_CONVS:
    raise OptionError(f"stem_conv must be 'conv', 'pad_channels' or 'space_to_depth', "
                      f"got {stem_conv!r}.", choices=STEM_CONVS)
  if stem_conv != 'conv' and stem not in SEVEN_BY_SEVEN_STEMS:
    raise ModelError(f"stem_conv={stem_conv!r} applies to the 7x7/2 stems "
                     f"({', '.join(map(repr, SEVEN_BY_SEVEN_STEMS))}) only; this model's stem "
                     f"is {stem!r} (leave stem_conv='conv').")


def check_padding(padding: str, stem: str = 'imagenet'):
  """One clear error for a padding the image nets do not know, or for 'same' on a stem it
  does not apply to (the CIFAR nets follow the paper's torch-style padding only)."""
  layers.check_padding(padding)
  if padding != 'torch' and stem not in PADDED_STEMS:
    raise ModelError(f"padding={padding!r} applies to the ImageNet-style stems "
                     f"({', '.join(map(repr, PADDED_STEMS))}) only; this model's stem is "
                     f"{stem!r} (leave padding='torch').")


def _conv(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMENSIONS)


def padded_channels_conv(x, kernel, strides, multiple: int = CHANNEL_MULTIPLE):
  """The symmetric-padded convolution with the input channels (image and kernel's input axis)
  zero-padded to a multiple of `multiple`: the added channels meet zero weights."""
  extra = -x.shape[-1] % multiple
  x = jnp.pad(x, [(0, 0)] * 3 + [(0, extra)])
  kernel = jnp.pad(kernel, [(0, 0)] * 2 + [(0, extra), (0, 0)])
  return _conv(x, kernel, strides, same_padding(kernel.shape[:2]))


def space_to_depth(x, blocks: Sequence[int]):
  """(N, H, W, C) -> (N, H/bh, W/bw, bh*bw*C), channels ordered (row in block, column in
  block, channel). H and W must be multiples of the block sizes."""
  n, h, w, c = x.shape
  bh, bw = blocks
  x = x.reshape(n, h // bh, bh, w // bw, bw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // bh, w // bw, bh * bw * c)


def blocked_kernel(kernel, blocks: Sequence[int]):
  """(kh, kw, C, O) -> (ceil(kh/bh), ceil(kw/bw), bh*bw*C, O): tap (bh*a + r, bw*b + s) of the
  kernel moves to tap (a, b), channel block (r, s); taps past the kernel's end are zero."""
  kh, kw, c, o = kernel.shape
  bh, bw = blocks
  th, tw = -(-kh // bh), -(-kw // bw)
  kernel = jnp.pad(kernel, [(0, th * bh - kh), (0, tw * bw - kw), (0, 0), (0, 0)])
  kernel = kernel.reshape(th, bh, tw, bw, c, o).transpose(0, 2, 1, 3, 4, 5)
  return kernel.reshape(th, tw, bh * bw * c, o)


def space_to_depth_conv(x, kernel, strides):
  """The strided convolution with symmetric padding k//2, computed as a stride-1 VALID
  convolution of `blocked_kernel` over `space_to_depth` blocks of the padded input.

  Output position o reads padded rows s*o + t for taps t < k, that is block o + t//s, row
  t%s of it. The padded input gets p = k//2 rows in front and, behind, exactly what the last
  output's last block needs: more than p rows only on odd sizes (zeros that meet zero taps),
  fewer where the plain convolution never reads its last padded rows. So any size is exact.
  """
  pads = []
  for size, k, s in zip(x.shape[1:3], kernel.shape[:2], strides):
    p = k // 2
    out = (size + 2 * p - k) // s + 1
    pads.append((p, s * (out + -(-k // s) - 1) - size - p, 0))
  zero = jnp.zeros((), x.dtype)
  x = jax.lax.pad(x, zero, [(0, 0, 0), *pads, (0, 0, 0)])  # a negative high pad crops
  return _conv(space_to_depth(x, strides), blocked_kernel(kernel, strides), (1, 1), 'VALID')


class StemConv(nn.Module):
  """A bias-free 2-D convolution with torch-style symmetric padding computed by `method`
  ('pad_channels' or 'space_to_depth'). Its one parameter, 'kernel' (kh, kw, in, features),
  has the name, shape and initialisation of `nn.Conv`'s, so the two read the same weights."""
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  method: str
  kernel_init: Callable = he_normal_fan_out
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    if self.method == 'pad_channels':
      return padded_channels_conv(x, kernel, self.strides)
    if self.method == 'space_to_depth':
      return space_to_depth_conv(x, kernel, self.strides)
    raise OptionError(f"StemConv method must be 'pad_channels' or 'space_to_depth', "
                      f"got {self.method!r}.", choices=STEM_CONVS[1:])


def stem_conv_layer(stem_conv: str, conv, dtype, param_dtype, weight_standardization=False):
  """The layer a 7x7/2 stem builds its convolution with: the model's own `conv` for 'conv',
  else a `StemConv` computing the same convolution another way (the caller has checked
  `stem_conv`), reading its kernel standardized as `conv` would."""
  if stem_conv == 'conv':
    return conv
  cls = weight_standardized(StemConv) if weight_standardization else StemConv
  return lambda features, kernel_size, strides, name: cls(
      features, kernel_size, strides, stem_conv, dtype=dtype, param_dtype=param_dtype,
      name=name)


# The builders: (model, x, conv, norm) -> the stem's output, with the model's `conv` and `norm`
# partials; `model` is the ResNet or VideoResNet calling them (its stem_width, preact,
# padding, stem_conv, dtypes).

def _seven_by_seven_conv(model, x, conv):
  # The 7x7/2 pads 3 per side under either padding, as the Flax ImageNet example's does.
  conv_init = stem_conv_layer(model.stem_conv, functools.partial(conv, padding='torch'),
                              model.dtype, model.param_dtype, model.weight_standardization)
  return conv_init(model.stem_width, (7, 7), (2, 2), name='conv_init')(x)


def _norm_and_pool(model, x, norm, zero_padded_pool: bool = False):
  if not model.preact:  # pre-activation nets normalise at the first block (timm ResNetV2)
    x = nn.relu(norm(name='bn_init')(x))
  pads = window_pads(x.shape[1:3], (3, 3), (2, 2), model.padding)
  if zero_padded_pool:
    # BiT pads with zeros, not -inf, before its 3x3/2 max pool (timm's stem_type='fixed');
    # after a pre-activation stem's un-normalised conv the two differ.
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return nn.max_pool(x, (3, 3), (2, 2), padding='VALID')
  return nn.max_pool(x, (3, 3), (2, 2), padding=pads)


def _imagenet_stem(model, x, conv, norm):
  return _norm_and_pool(model, _seven_by_seven_conv(model, x, conv), norm)


def _bit_stem(model, x, conv, norm):
  return _norm_and_pool(model, _seven_by_seven_conv(model, x, conv), norm, zero_padded_pool=True)


def _deep_stem(model, x, conv, norm):
  # He et al. 2019 ("Bag of Tricks", ResNet-C/D): the 7x7/2 as three 3x3 convolutions, the
  # first two half as wide (timm's stem_type='deep').
  for i, (width, strides) in enumerate(((model.stem_width // 2, (2, 2)),
                                        (model.stem_width // 2, (1, 1))), 1):
    x = conv(width, (3, 3), strides, name=f'conv_init{i}')(x)
    x = nn.relu(norm(name=f'bn_init{i}')(x))
  return _norm_and_pool(model, conv(model.stem_width, (3, 3), name='conv_init3')(x), norm)


def _cifar_stem(model, x, conv, norm):
  x = conv(model.stem_width, (3, 3), name='conv_init')(x)
  return x if model.preact else nn.relu(norm(name='bn_init')(x))


def _video_stem(model, x, conv, norm):
  x = conv(64, (3, 7, 7), (1, 2, 2), name='conv_init')(x)
  return nn.relu(norm(name='bn_init')(x))


def _r2plus1d_stem(model, x, conv, norm):
  x = conv(45, (1, 7, 7), (1, 2, 2), name='conv_init_spatial')(x)
  x = nn.relu(norm(name='bn_init_spatial')(x))
  x = conv(64, (3, 1, 1), name='conv_init')(x)
  return nn.relu(norm(name='bn_init')(x))


@dataclasses.dataclass(frozen=True)
class Stem:
  """One stem's facts. Native inputs: ImageNet's 224x224 crops (He et al. 2015), CIFAR's 32x32
  images (He et al. 2015, section 4.2), Kinetics-400 clips of 16 frames at 112x112 (Tran et
  al. 2018; torchvision's video weights use clip_len=16)."""
  name: str
  input_kind: str                   # 'image' | 'video': the net that builds it
  build: Callable                   # (model, x, conv, norm) -> the stem's output
  reduction: int                    # how many times smaller its output's height and width are
  family: str                       # 'imagenet' | 'cifar' | 'kinetics': the data it was made for
  input_size: int                   # native height and width
  num_frames: Optional[int] = None  # native clip length (video)
  seven_by_seven: bool = False      # starts with the 7x7/2 conv: takes every stem_conv
  same_padding: bool = False        # padding='same' applies (the ImageNet-style stems)
  torch_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # ^ our module -> its name in torchvision's layout (timm's resnet.py names the same)
  timm_v2_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # ^ our module -> its name in timm's resnetv2.py (pre-activation and BiT nets)
  transformers_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # ^ our module -> its name in transformers' ResNetForImageClassification
  big_vision_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # ^ our module -> its scope in BiT's release .npz files (under 'resnet/')
  flax_imagenet_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # ^ our module -> its name in the Flax ImageNet example's ResNet (the same names)


_V1_NAMES = {'conv_init': 'conv1', 'bn_init': 'bn1'}
_V2_NAMES = {'conv_init': 'stem.conv'}
_IMAGENET = dict(input_kind='image', reduction=4, family='imagenet', input_size=224,
                 same_padding=True)
_KINETICS = dict(input_kind='video', reduction=2, family='kinetics', input_size=112,
                 num_frames=16)
STEMS = {stem.name: stem for stem in (
    Stem('imagenet', build=_imagenet_stem, seven_by_seven=True, torch_names=_V1_NAMES,
         timm_v2_names=_V2_NAMES, transformers_names={
             'conv_init': 'resnet.embedder.embedder.convolution',
             'bn_init': 'resnet.embedder.embedder.normalization'},
         flax_imagenet_names={'conv_init': 'conv_init', 'bn_init': 'bn_init'}, **_IMAGENET),
    # timm's resnet.py deep stem is Sequential(conv, bn, relu, conv, bn, relu, conv), then bn1.
    Stem('deep', build=_deep_stem, torch_names={
        'conv_init1': 'conv1.0', 'bn_init1': 'conv1.1', 'conv_init2': 'conv1.3',
        'bn_init2': 'conv1.4', 'conv_init3': 'conv1.6', 'bn_init': 'bn1'}, **_IMAGENET),
    Stem('bit', build=_bit_stem, seven_by_seven=True, timm_v2_names=_V2_NAMES,
         big_vision_names={'conv_init': 'root_block/standardized_conv2d'}, **_IMAGENET),
    Stem('cifar', build=_cifar_stem, input_kind='image', reduction=1, family='cifar',
         input_size=32),
    # torchvision's video stems are Sequential(conv, BN, ReLU[, conv, BN, ReLU]).
    Stem('basic', build=_video_stem, torch_names={'conv_init': 'stem.0', 'bn_init': 'stem.1'},
         **_KINETICS),
    Stem('r2plus1d', build=_r2plus1d_stem, torch_names={
        'conv_init_spatial': 'stem.0', 'bn_init_spatial': 'stem.1', 'conv_init': 'stem.3',
        'bn_init': 'stem.4'}, **_KINETICS),
)}
SEVEN_BY_SEVEN_STEMS = tuple(name for name, stem in STEMS.items() if stem.seven_by_seven)
PADDED_STEMS = tuple(name for name, stem in STEMS.items() if stem.same_padding)
