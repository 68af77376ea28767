"""ResNet assembly for images (NHWC): ImageNet, deep (ResNet-D), BiT and CIFAR stems, post- and
pre-activation, plain twins, ResNeXt, Wide ResNet, ResNet-D, BiT. Variants are rows in
`jax_resnet.registry`. `ResNetBase` holds what the image and video (`jax_resnet.video`) nets
share."""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jax_resnet.blocks import block_class
from jax_resnet.errors import ModelError, OptionError
from jax_resnet.layers import (GROUP_NORM_GROUPS, BatchNorm, PointwiseConv, conv_padding,
                               drop_path_rates, he_normal_fan_out, weight_standardized)
from jax_resnet.remat import remat_block
from jax_resnet.stems import check_padding, check_stem_conv, stem_spec

Dtype = Any


class ResNetBase(nn.Module):
  """The options the image (`ResNet`) and video (`VideoResNet`) nets share, with one meaning
  and default, and the pieces both assemble from: input check, conv/norm partials, head.
  Subclasses set `input_kind` and `input_layout` (class constants, not options)."""
  stage_sizes: Sequence[int]                 # blocks per stage, e.g. (3, 4, 6, 3)
  num_classes: int = 1000
  stage_widths: Sequence[int] = (64, 128, 256, 512)  # base width of each stage
  residual: bool = True                      # False: plain net, same layers, no shortcut
  shortcut: str = 'B'                        # 'A' zero-pad | 'B' projection | 'C' all
  drop_path_rate: float = 0.0                # stochastic depth rate of the last block
  residual_scale: float = 1.0                # x + h * F(x), the ODE view
  zero_init_residual: bool = False           # zero each branch's last BN scale
  freeze_batch_norm: bool = False            # BN uses running statistics in training too
  conv1x1_as_dot: bool = False               # 1x1 convs as matrix products (faster on XLA:CPU)
  bn_axis_name: Optional[str] = None         # set by the trainer for cross-replica BN
  bn_momentum: float = 0.9                   # torch's momentum=0.1
  bn_epsilon: float = 1e-5                   # the epsilon of either norm
  norm: str = 'batch'                        # 'batch' | 'group' (GroupNorm, no batch statistics)
  weight_standardization: bool = False       # every conv standardizes its kernel (BiT)
  output_stride: int = 32                    # 16 | 8: dilate the last stages (stage_plan)
  remat: str = 'none'                        # 'none' | 'block' | 'save_convs' (jax_resnet.remat)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  input_kind = 'image'                       # 'image' | 'video'
  input_layout = '(batch, height, width, channels)'

  def check_input(self, x):
    """One clear error for inputs the network cannot take."""
    rank = len(self.input_layout.split(','))
    shape = getattr(x, 'shape', None)
    model = type(self).__name__
    if shape is None or len(shape) != rank:
      raise ModelError(f'{model} expects a rank-{rank} input {self.input_layout}, got shape '
                       f'{shape}; add the batch axis or transpose to channels-last.')
    dtype = jnp.result_type(x)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
      raise ModelError(f'{model} expects real-valued pixels, got dtype {dtype}; '
                       'convert images to float32 first.')

  def conv_and_norm(self, train: bool, padding: str = 'torch'):
    """The `conv` and `norm` partials every block of the net uses, built once."""
    return make_layers(train, self.dtype, self.param_dtype, self.bn_momentum, self.bn_epsilon,
                       self.bn_axis_name, self.freeze_batch_norm, self.conv1x1_as_dot,
                       self.norm, self.weight_standardization, padding)

  def classifier_head(self, x, features, return_features: bool):
    """Global average pooling + dense head."""
    x = features['pre_logits'] = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
    if self.num_classes > 0:
      x = features['logits'] = nn.Dense(self.num_classes, dtype=self.dtype,
                                         param_dtype=self.param_dtype, name='head')(x)
    return features if return_features else x


class ResNet(ResNetBase):
  """A residual (or plain) network of `len(stage_sizes)` stages.

  Call as `model.apply(variables, x, train=...)`; with `return_features=True` the result is a
  dict with 'stem', 'stage1'..'stageN', 'pre_logits' and (when `num_classes > 0`) 'logits'.
  `num_classes=0` drops the head (a backbone whose output is the pooled features).
  """
  block: str = 'basic'                       # 'basic' | 'bottleneck'
  stem: str = 'imagenet'                     # 'imagenet' (7x7/2 + maxpool) | 'deep' (3x 3x3,
                                             # ResNet-D) | 'bit' (7x7/2 + zero-padded maxpool)
                                             # | 'cifar' (3x3)
  stem_width: int = 64                       # stem output channels
  preact: bool = False                       # He et al. 2016 pre-activation (v2)
  groups: int = 1                            # ResNeXt cardinality
  base_width: int = 64                       # bottleneck width per group (128: wide_resnet50_2)
  stride_in_1x1: bool = False                # the paper's bottleneck stride on the first 1x1
  avg_down: bool = False                     # ResNet-D shortcut: 2x2 avg pool, then 1x1/1 conv
  dropout_rate: float = 0.0                  # Wide ResNet dropout between convs (basic preact)
  scan_blocks: bool = False                  # nn.scan over each stage's identical blocks
  stem_conv: str = 'conv'                    # ImageNet 7x7/2 as 'conv' | 'pad_channels' |
                                             # 'space_to_depth': same weights (jax_resnet.stems)
  padding: str = 'torch'                     # 'torch' k//2 per side | 'same' XLA's 'SAME' on
                                             # strided windows (the Flax ImageNet example)

  def _stem(self, x, conv, norm):
    check_stem_conv(self.stem_conv, self.stem)
    check_padding(self.padding, self.stem)
    return stem_spec(self.stem, 'image').build(self, x, conv, norm)

  def _block_options(self):
    extra = {}
    if self.block == 'bottleneck':
      extra = dict(groups=self.groups, base_width=self.base_width,
                   stride_in_1x1=self.stride_in_1x1)
    elif self.preact:
      extra = dict(dropout_rate=self.dropout_rate)
    if self.dropout_rate and not (self.preact and self.block == 'basic'):
      raise ModelError('dropout_rate applies to pre-activation basic blocks (Wide ResNet) '
                       'only; use drop_path_rate for stochastic depth.')
    return dict(shortcut=self.shortcut, residual=self.residual, avg_down=self.avg_down,
                residual_scale=self.residual_scale, zero_init_residual=self.zero_init_residual,
                **extra)

  @nn.compact
  def __call__(self, x, train: bool = True, return_features: bool = False):
    self.check_input(x)
    conv, norm = self.conv_and_norm(train, self.padding)
    features = {}
    x = features['stem'] = self._stem(jnp.asarray(x, self.dtype), conv, norm)
    block_cls = remat_block(block_class(self.block, self.preact), self.remat)
    plan = stage_plan(stem_spec(self.stem).reduction, len(self.stage_sizes),
                      self.output_stride)
    rates = drop_path_rates(self.drop_path_rate, sum(self.stage_sizes))
    first = 0
    for i, (size, width) in enumerate(zip(self.stage_sizes, self.stage_widths)):
      stage_rates, first = rates[first:first + size], first + size
      stride, dilation, first_dilation = plan[i]
      options = dict(conv=conv, norm=norm, dilation=dilation, **self._block_options())
      x = block_cls(width, (stride, stride), drop_path_rate=stage_rates[0],
                    first_dilation=first_dilation, name=f'stage{i + 1}_block1',
                    **options)(x, train)  # positional: remat's static argument
      if self.scan_blocks and size > 1:
        x = scan_identity_blocks(block_cls, width, options, stage_rates[1:], train,
                                 name=f'stage{i + 1}_scan', dtype=self.dtype)(x)
      else:
        for j in range(1, size):
          x = block_cls(width, (1, 1), drop_path_rate=stage_rates[j],
                        name=f'stage{i + 1}_block{j + 1}', **options)(x, train)
      features[f'stage{i + 1}'] = x
    if self.preact:
      x = nn.relu(norm(name='final_bn')(x))
    return self.classifier_head(x, features, return_features)

OUTPUT_STRIDES = (8, 16, 32)
NORMS = ('batch', 'group')


def stage_plan(stem_reduction: int, num_stages: int, output_stride: int = 32):
  """(stride, dilation, first block's first 3x3 dilation) of each stage. Stage 1 keeps the
  stem's resolution and each later one halves it, until the reduction reaches `output_stride`;
  from there a stage keeps the resolution and doubles its 3x3 convolutions' dilation instead
  (atrous convolution, Chen et al. 2017, DeepLab), so the receptive field and the parameters
  stay. As timm's ResNet does it, a dilated stage's first 3x3 keeps the previous stage's
  dilation. 32 dilates no ImageNet-stem stage; a value the net never reaches is refused."""
  if output_stride not in OUTPUT_STRIDES:
    raise OptionError(f'output_stride must be 8, 16 or 32, got {output_stride!r}.',
                      choices=OUTPUT_STRIDES)
  native = stem_reduction * 2 ** (num_stages - 1)
  if output_stride != 32 and native < output_stride:
    raise ModelError(f'output_stride={output_stride} cannot be honoured: this net reduces its '
                     f'input {native} times at most; leave output_stride at 32 (no dilation).')
  plan, reduction, dilation = [], stem_reduction, 1
  for i in range(num_stages):
    stride, previous = (2 if i > 0 else 1), dilation
    if reduction >= output_stride:
      stride, dilation = 1, dilation * stride
    reduction *= stride
    plan.append((stride, dilation, previous))
  return plan


def scan_identity_blocks(block_cls, width, options, rates, train, name, dtype=jnp.float32):
  """The identical (stride 1, same width) blocks of a stage as one `nn.scan`: XLA compiles
  the block once instead of once per block, so compile time stops growing with depth.
  Parameters are stacked on a leading axis (`jax_resnet.stack_blocks` converts)."""
  static_rate = all(r == rates[0] for r in rates)

  class Body(nn.Module):
    @nn.compact
    def __call__(self, x, rate):
      rate = rates[0] if static_rate else rate
      y = block_cls(width, (1, 1), drop_path_rate=rate, name='block', **options)(x, train)
      return y, None

  scanned = nn.scan(Body, variable_axes={'params': 0, 'batch_stats': 0, 'intermediates': 0},
                    split_rngs={'params': True, 'dropout': True}, in_axes=0,
                    length=len(rates))
  run = scanned(name=name)
  # The per-block rates are data here: at least float32, float64 in a float64 model.
  return lambda x: run(x, jnp.asarray(rates, jnp.promote_types(jnp.float32, dtype)))[0]


def check_norm(norm: str):
  """The one check of the `norm` option's value (`make_layers` builds each)."""
  if norm not in NORMS:
    raise OptionError(f"norm must be 'batch' or 'group', got {norm!r}.", choices=NORMS)


def make_layers(train: bool, dtype=jnp.float32, param_dtype=jnp.float32, bn_momentum=0.9,
                bn_epsilon=1e-5, bn_axis_name=None, freeze_batch_norm=False,
                conv1x1_as_dot=False, norm='batch', weight_standardization=False,
                padding='torch'):
  """The `conv` and `norm` partials blocks take; public so blocks can be used standalone.
  `padding` ('torch' | 'same', `jax_resnet.layers.window_pads`) is every convolution's.
  `norm='group'` gives GroupNorm (Wu & He 2018), whose statistics are each example's own, so
  the BatchNorm options (momentum, axis name, freezing) do not apply to it."""
  conv = functools.partial(_Conv, dtype=dtype, param_dtype=param_dtype,
                           conv1x1_as_dot=conv1x1_as_dot, padding=padding,
                           weight_standardization=weight_standardization)
  check_norm(norm)
  if norm == 'group':
    # Two-pass variance, as BatchNorm's (flax's default one-pass E[x^2] - E[x]^2 cancels).
    return conv, functools.partial(nn.GroupNorm, num_groups=GROUP_NORM_GROUPS,
                                   epsilon=bn_epsilon, use_fast_variance=False, dtype=dtype,
                                   param_dtype=param_dtype)
  norm = functools.partial(
      BatchNorm, use_running_average=not train or freeze_batch_norm, momentum=bn_momentum,
      epsilon=bn_epsilon,
      dtype=dtype, param_dtype=param_dtype, axis_name=bn_axis_name)
  return conv, norm


def _Conv(features, kernel_size, strides=None, conv1x1_as_dot=False,
          weight_standardization=False, padding='torch', **kwargs):
  """Bias-free convolution with He fan_out init and torch-style symmetric padding (or XLA's
  'SAME' for padding='same'), its kernel standardized when `weight_standardization` (Qiao et
  al. 2019; BiT)."""
  kwargs.setdefault('kernel_init', he_normal_fan_out)
  pointwise = all(k == 1 for k in kernel_size) and kwargs.get('feature_group_count', 1) == 1
  wrap = weight_standardized if weight_standardization else lambda cls: cls
  if conv1x1_as_dot and pointwise:
    kwargs.pop('feature_group_count', None)
    return wrap(PointwiseConv)(features, strides or (1,) * len(kernel_size), **kwargs)
  return wrap(nn.Conv)(features, kernel_size, strides or (1,) * len(kernel_size),
                       padding=conv_padding(kernel_size, padding, kwargs.get('kernel_dilation')),
                       use_bias=False, **kwargs)
