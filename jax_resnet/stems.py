"""Exact alternative computations of the ImageNet stem's 7x7/2 convolution (`stem_conv`).

Every option keeps the parameter `conv_init/kernel` (7, 7, 3, 64) and computes the same
convolution (torch-style symmetric padding 3) up to float round-off; only the shape of the
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

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_resnet.layers import PADDINGS, he_normal_fan_out, same_padding, weight_standardized

STEM_CONVS = ('conv', 'pad_channels', 'space_to_depth')
SEVEN_BY_SEVEN_STEMS = ('imagenet', 'bit')  # the stems whose first layer is the 7x7/2 conv
CHANNEL_MULTIPLE = 4
_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def check_stem_conv(stem_conv: str, stem: str = 'imagenet'):
  """One clear error for a value the 7x7/2 stems cannot take, or for a non-default value on a
  stem it does not apply to (the CIFAR 3x3/1 and the deep 3x3 stems have no 7x7 to compute
  another way)."""
  if stem_conv not in STEM_CONVS:
    raise ValueError(f"stem_conv must be 'conv', 'pad_channels' or 'space_to_depth', "
                     f"got {stem_conv!r}.")
  if stem_conv != 'conv' and stem not in SEVEN_BY_SEVEN_STEMS:
    raise ValueError(f"stem_conv={stem_conv!r} applies to the 7x7/2 stems ('imagenet', 'bit') "
                     f"only; this model's stem is {stem!r} (leave stem_conv='conv').")


PADDED_STEMS = ('imagenet', 'deep', 'bit')  # the ImageNet-style stems padding='same' applies to


def check_padding(padding: str, stem: str = 'imagenet'):
  """One clear error for a padding the image nets do not know, or for 'same' on a stem it
  does not apply to (the CIFAR nets follow the paper's torch-style padding only)."""
  if padding not in PADDINGS:
    raise ValueError(f"padding must be 'torch' or 'same', got {padding!r}.")
  if padding != 'torch' and stem not in PADDED_STEMS:
    raise ValueError(f"padding={padding!r} applies to the ImageNet-style stems ('imagenet', "
                     f"'deep', 'bit') only; this model's stem is {stem!r} (leave "
                     "padding='torch').")


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
    raise ValueError(f"StemConv method must be 'pad_channels' or 'space_to_depth', "
                     f"got {self.method!r}.")


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
