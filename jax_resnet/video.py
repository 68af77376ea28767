"""3D ResNets for video (N, T, H, W, C), layer for layer as torchvision's VideoResNet
(Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions"):

- r3d: full 3x3x3 convolutions;
- mc3: 3x3x3 in the first stage, 1x3x3 ("no temporal") after;
- r(2+1)d: each 3x3x3 factorised into 1x3x3 -> BN -> ReLU -> 3x1x1 with the mid width that
  keeps the parameter count of the 3x3x3 convolution.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jax_resnet.blocks import _Block
from jax_resnet.errors import OptionError
from jax_resnet.layers import drop_path_rates
from jax_resnet.models import ResNetBase
from jax_resnet.remat import remat_block
from jax_resnet.stems import stem_spec

CONV_TYPES = ('3d', '2d', '2+1d')


def downsample_strides(conv_type: str, stride: int):
  """torchvision's `get_downsample_stride`: 'no temporal' convs never stride in time."""
  return (1, stride, stride) if conv_type == '2d' else (stride, stride, stride)


class VideoBasicBlock(_Block):
  """Two spatiotemporal convolutions with BN, post-activation. `strides` here is the block's
  downsampling stride (T, H, W)."""
  conv_type: str = '3d'

  def _conv(self, x, features, mid_features, strides, name):
    st, sh, sw = strides
    if self.conv_type == '3d':
      return self.conv(features, (3, 3, 3), strides, name=name)(x)
    if self.conv_type == '2d':
      return self.conv(features, (1, 3, 3), (1, sh, sw), name=name)(x)
    if self.conv_type == '2+1d':
      x = self.conv(mid_features, (1, 3, 3), (1, sh, sw), name=f'{name}_spatial')(x)
      x = self.act(self.norm(name=f'{name}_mid_bn')(x))
      return self.conv(features, (3, 1, 1), (st, 1, 1), name=f'{name}_temporal')(x)
    raise OptionError(f'conv_type must be one of {CONV_TYPES}, got {self.conv_type!r}.',
                      choices=CONV_TYPES)

  @nn.compact
  def __call__(self, x, train: bool):
    in_features = x.shape[-1]
    # torchvision computes the (2+1)D mid width once per block, from the block's input width.
    mid = (in_features * self.features * 27) // (in_features * 9 + 3 * self.features)
    y = self._conv(x, self.features, mid, self.strides, 'conv1')
    y = self.act(self.norm(name='bn1')(y))
    y = self._conv(y, self.features, mid, (1, 1, 1), 'conv2')
    y = self.last_norm('bn2')(y)
    return self.act(self.merge_residual(x, x, y, train, project_with_norm=True))


def check_video_output_stride(output_stride):
  if output_stride != 32:
    raise OptionError(f'output_stride={output_stride!r}: video nets keep their strides (no '
                      'dilated stages); leave output_stride at 32.', choices=(32,))


class VideoResNet(ResNetBase):
  """torchvision's VideoResNet with this library's uniform options (`ResNetBase`)."""
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  num_classes: int = 400                     # Kinetics-400, as torchvision's
  conv_types: Sequence[str] = ('3d', '3d', '3d', '3d')  # per stage: '3d' | '2d' | '2+1d'
  stem: str = 'basic'                        # 'basic' (3x7x7) | 'r2plus1d' (1x7x7 -> 3x1x1)

  input_kind = 'video'
  input_layout = '(batch, time, height, width, channels)'

  @nn.compact
  def __call__(self, x, train: bool = True, return_features: bool = False):
    self.check_input(x)
    check_video_output_stride(self.output_stride)
    conv, norm = self.conv_and_norm(train)
    features = {}
    stem = stem_spec(self.stem, 'video').build
    x = features['stem'] = stem(self, jnp.asarray(x, self.dtype), conv, norm)
    rates = iter(drop_path_rates(self.drop_path_rate, sum(self.stage_sizes)))
    stages = zip(self.stage_sizes, self.stage_widths, self.conv_types)
    block_cls = remat_block(VideoBasicBlock, self.remat)
    for i, (size, width, conv_type) in enumerate(stages):
      for j in range(size):
        strides = downsample_strides(conv_type, 2 if i > 0 and j == 0 else 1)
        x = block_cls(
            width, strides, conv=conv, norm=norm, shortcut=self.shortcut,
            residual=self.residual, drop_path_rate=next(rates),
            residual_scale=self.residual_scale, zero_init_residual=self.zero_init_residual,
            conv_type=conv_type, name=f'stage{i + 1}_block{j + 1}')(x, train)
      features[f'stage{i + 1}'] = x
    return self.classifier_head(x, features, return_features)
