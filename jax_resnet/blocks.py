"""Residual blocks: basic and bottleneck, post-activation (He et al. 2015) and pre-activation
(He et al. 2016), with shortcut options A/B/C, plain (no shortcut) twins, grouped convolutions
(ResNeXt), widening (Wide ResNet), stochastic depth and a residual scale (x + h * F(x)).

Blocks receive `conv` and `norm` partials built once by the model (the Flax ImageNet idiom), so
dtype, init and cross-replica BatchNorm are decided in one place.
"""

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn

from jax_resnet.errors import OptionError
from jax_resnet.layers import DropPath, avg_pool_shortcut, needs_projection, zero_pad_shortcut

ModuleDef = Any


class _Block(nn.Module):
  """Fields and the residual merge every block (2D and video) shares. `features` is the
  block's base width (planes)."""
  features: int
  strides: Sequence[int]
  conv: ModuleDef
  norm: ModuleDef
  act: Callable = nn.relu
  shortcut: str = 'B'
  residual: bool = True
  drop_path_rate: float = 0.0
  residual_scale: float = 1.0
  zero_init_residual: bool = False
  avg_down: bool = False          # ResNet-D: the projection pools, then convolves at stride 1
  dilation: int = 1               # the 3x3 convolutions' dilation (a dilated stage)
  first_dilation: Optional[int] = None  # the first 3x3's (None: `dilation`); timm's rule
                                  # keeps the previous stage's in a dilated stage's first block

  def dilated(self, first: bool = False):
    """The keyword a 3x3 convolution of this block takes for its dilation (none when 1)."""
    d = (self.first_dilation or self.dilation) if first else self.dilation
    return {} if d == 1 else {'kernel_dilation': (d,) * len(self.strides)}

  def last_norm(self, name):
    """Post-activation branches end in BN; zero-init its scale (Goyal et al. 2017)."""
    if self.zero_init_residual:
      return self.norm(name=name, scale_init=nn.initializers.zeros)
    return self.norm(name=name)

  def last_conv(self, features, kernel, name, **kwargs):
    """Pre-activation branches end in a conv; zero-init its kernel so the block starts as
    identity."""
    if self.zero_init_residual:
      return self.conv(features, kernel, name=name, kernel_init=nn.initializers.zeros, **kwargs)
    return self.conv(features, kernel, name=name, **kwargs)

  def merge_residual(self, x, shortcut_input, branch, train: bool, project_with_norm: bool):
    """Returns shortcut(x) + residual_scale * drop_path(branch), or the branch alone for plain
    nets. The branch is sown as 'intermediates/residual' so analyses can read F_i(x_i). A
    method, so the DropPath and projection it creates belong to this block's scope."""
    if not self.residual:
      return branch
    out_features = branch.shape[-1]
    branch = DropPath(self.drop_path_rate, name='drop_path')(branch, deterministic=not train)
    branch = self.residual_scale * branch
    self.sow('intermediates', 'residual', branch)
    if needs_projection(self.shortcut, x.shape[-1], out_features, self.strides):
      ones = (1,) * len(self.strides)
      strides = self.strides
      if self.avg_down:
        shortcut_input = avg_pool_shortcut(shortcut_input, strides, self.dilation)
        strides = ones
      shortcut = self.conv(out_features, ones, strides, name='proj_conv')(shortcut_input)
      if project_with_norm:
        shortcut = self.norm(name='proj_bn')(shortcut)
    else:
      shortcut = zero_pad_shortcut(x, out_features, self.strides)
    return shortcut + branch


class BasicBlock(_Block):
  """3x3 -> 3x3, post-activation: relu(shortcut(x) + BN(conv(relu(BN(conv(x))))))."""

  @nn.compact
  def __call__(self, x, train: bool):
    y = self.conv(self.features, (3, 3), self.strides, name='conv1', **self.dilated(True))(x)
    y = self.act(self.norm(name='bn1')(y))
    y = self.conv(self.features, (3, 3), name='conv2', **self.dilated())(y)
    y = self.last_norm('bn2')(y)
    return self.act(self.merge_residual(x, x, y, train, project_with_norm=True))


class BottleneckBlock(_Block):
  """1x1 -> 3x3 -> 1x1 (x4), post-activation. Stride on the 3x3 ("v1.5", torchvision) unless
  `stride_in_1x1` (the paper's original). `groups`/`base_width` give ResNeXt and Wide ResNet."""
  groups: int = 1
  base_width: int = 64
  expansion: int = 4
  stride_in_1x1: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    width = int(self.features * (self.base_width / 64.0)) * self.groups
    s1, s3 = (self.strides, (1, 1)) if self.stride_in_1x1 else ((1, 1), self.strides)
    y = self.conv(width, (1, 1), s1, name='conv1')(x)
    y = self.act(self.norm(name='bn1')(y))
    y = self.conv(width, (3, 3), s3, feature_group_count=self.groups, name='conv2',
                  **self.dilated(True))(y)
    y = self.act(self.norm(name='bn2')(y))
    y = self.conv(self.features * self.expansion, (1, 1), name='conv3')(y)
    y = self.last_norm('bn3')(y)
    return self.act(self.merge_residual(x, x, y, train, project_with_norm=True))


class PreActBasicBlock(_Block):
  """BN -> ReLU -> 3x3 -> BN -> ReLU -> [dropout] -> 3x3, plus shortcut (He et al. 2016).

  A projection shortcut reads the pre-activated input and has no BN, as in the authors' code
  and Wide ResNet. `dropout_rate` is Wide ResNet's dropout between the two convolutions.
  """
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    pre = self.act(self.norm(name='bn1')(x))
    y = self.conv(self.features, (3, 3), self.strides, name='conv1', **self.dilated(True))(pre)
    y = self.act(self.norm(name='bn2')(y))
    if self.dropout_rate:
      y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = self.last_conv(self.features, (3, 3), 'conv2', **self.dilated())(y)
    return self.merge_residual(x, pre, y, train, project_with_norm=False)


class PreActBottleneckBlock(_Block):
  """BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (x4), plus shortcut (He et al. 2016)."""
  groups: int = 1
  base_width: int = 64
  expansion: int = 4
  stride_in_1x1: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    width = int(self.features * (self.base_width / 64.0)) * self.groups
    s1, s3 = (self.strides, (1, 1)) if self.stride_in_1x1 else ((1, 1), self.strides)
    pre = self.act(self.norm(name='bn1')(x))
    y = self.conv(width, (1, 1), s1, name='conv1')(pre)
    y = self.act(self.norm(name='bn2')(y))
    y = self.conv(width, (3, 3), s3, feature_group_count=self.groups, name='conv2',
                  **self.dilated(True))(y)
    y = self.act(self.norm(name='bn3')(y))
    y = self.last_conv(self.features * self.expansion, (1, 1), 'conv3')(y)
    return self.merge_residual(x, pre, y, train, project_with_norm=False)


BLOCKS = {
    ('basic', False): BasicBlock,
    ('bottleneck', False): BottleneckBlock,
    ('basic', True): PreActBasicBlock,
    ('bottleneck', True): PreActBottleneckBlock,
}


def block_class(block: str, preact: bool):
  try:
    return BLOCKS[(block, preact)]
  except KeyError:
    raise OptionError(f"block must be 'basic' or 'bottleneck', got {block!r}.",
                      choices=('basic', 'bottleneck')) from None

