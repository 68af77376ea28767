"""A test reference for the Flax ImageNet example's ResNet v1.5 (google/flax,
examples/imagenet/models.py), written here with flax.linen from the example's documented
structure; docs/testing.md says how it was checked against the example.

What the variables' names and the numbers depend on, as the example defines them:
- the stem `conv_init` (7x7/2, padded 3 on each side), `bn_init`, ReLU, then a 3x3/2 max pool
  with XLA's 'SAME' padding;
- `ResNetBlock` (3x3, 3x3) or `BottleneckResNetBlock` (1x1, 3x3, 1x1 x4) modules, unnamed, so
  flax numbers them ResNetBlock_0, ResNetBlock_1, ... across the whole net; the stride (2 in
  the first block of every stage but the first) sits on the first 3x3; inside a block the
  convolutions and norms are unnamed too (Conv_0.., BatchNorm_0..), the projection of a block
  whose output shape differs from its input is `conv_proj` (1x1, the block's stride) and
  `norm_proj`; the last norm of the branch starts with zero scale;
- every convolution is `nn.Conv` without bias, its default 'SAME' padding and lecun-normal
  init; BatchNorm momentum 0.9, epsilon 1e-5, no cross-replica axis;
- global average pooling, then an unnamed `nn.Dense` (Dense_0).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# Blocks per stage and block type of the example's ResNet18 ... ResNet200.
DEPTHS = {'resnet18': ((2, 2, 2, 2), False), 'resnet34': ((3, 4, 6, 3), False),
          'resnet50': ((3, 4, 6, 3), True), 'resnet101': ((3, 4, 23, 3), True),
          'resnet152': ((3, 8, 36, 3), True), 'resnet200': ((3, 24, 36, 3), True)}


def _merge(block, x, branch, out_features):
  """relu(shortcut + branch); the shortcut projects when the shapes differ."""
  if x.shape != branch.shape:
    x = block.conv(out_features, (1, 1), block.strides, name='conv_proj')(x)
    x = block.norm(name='norm_proj')(x)
  return nn.relu(x + branch)


class ResNetBlock(nn.Module):
  filters: int
  conv: Any
  norm: Any
  strides: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(x)))
    y = self.norm(scale_init=nn.initializers.zeros)(self.conv(self.filters, (3, 3))(y))
    return _merge(self, x, y, self.filters)


class BottleneckResNetBlock(nn.Module):
  filters: int
  conv: Any
  norm: Any
  strides: Sequence[int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
    y = self.norm(scale_init=nn.initializers.zeros)(self.conv(4 * self.filters, (1, 1))(y))
    return _merge(self, x, y, 4 * self.filters)


class ExampleResNet(nn.Module):
  stage_sizes: Sequence[int]
  bottleneck: bool
  num_classes: int
  num_filters: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype)
    x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name='conv_init')(x)
    x = nn.relu(norm(name='bn_init')(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding='SAME')
    block_cls = BottleneckResNetBlock if self.bottleneck else ResNetBlock
    for stage, size in enumerate(self.stage_sizes):
      for index in range(size):
        strides = (2, 2) if stage > 0 and index == 0 else (1, 1)
        x = block_cls(self.num_filters * 2 ** stage, conv, norm, strides)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)


def example_model(name: str, num_classes: int = 1000, **kwargs) -> ExampleResNet:
  """The example's `ResNet18` ... `ResNet200` under our model names."""
  stage_sizes, bottleneck = DEPTHS[name]
  return ExampleResNet(stage_sizes, bottleneck, num_classes, **kwargs)
