"""Small building pieces shared by every block: He init, shortcuts, stochastic depth, the
normalisations (BatchNorm, GroupNorm) and Weight Standardization."""

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_resnet.errors import ModelError, OptionError

# He et al. 2015 ("Delving deep into rectifiers"), fan_out mode as torchvision's ResNet uses.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

SHORTCUT_TYPES = ('A', 'B', 'C')


def same_padding(kernel_size: Sequence[int], dilation: Optional[Sequence[int]] = None):
  """Symmetric padding k//2 per side, as torch's `padding=k//2` (d * (k - 1) // 2 for a
  convolution dilated by d, torch's `padding=dilation` for 3x3).

  Flax's 'SAME' pads (0, 1) for stride 2 on even inputs; torch pads (1, 1). Explicit symmetric
  padding keeps the two numerically identical, which the weight import relies on.
  """
  dilation = dilation or (1,) * len(kernel_size)
  return [(d * (k - 1) // 2,) * 2 for k, d in zip(kernel_size, dilation)]


PADDINGS = ('torch', 'same')


def xla_same_pads(sizes: Sequence[int], window: Sequence[int], strides: Sequence[int]):
  """The (before, after) pads XLA's 'SAME' gives each spatial axis: ceil(n / s) outputs from
  max((ceil(n / s) - 1) * s + k - n, 0) pads, the smaller half before. A 3x3/2 window on an
  even side gets (0, 1), where torch's k//2 gives (1, 1)."""
  pads = []
  for n, k, s in zip(sizes, window, strides):
    total = max((-(-n // s) - 1) * s + k - n, 0)
    pads.append((total // 2, total - total // 2))
  return pads


def window_pads(sizes: Sequence[int], window: Sequence[int], strides: Sequence[int],
                padding: str = 'torch'):
  """A convolution's or pool's pads under `padding` (one of PADDINGS): 'torch', k//2 on each
  side (`same_padding`); 'same', XLA's 'SAME' (`xla_same_pads`), as the Flax ImageNet example
  pads. The two differ only on strided windows."""
  check_padding(padding)
  if padding == 'same':
    return xla_same_pads(sizes, window, strides)
  return same_padding(window)


def conv_padding(kernel_size: Sequence[int], padding: str = 'torch',
                 dilation: Optional[Sequence[int]] = None):
  """`nn.Conv`'s padding argument under `padding`: explicit symmetric pads (`same_padding`,
  dilation included), or the string 'SAME' that XLA resolves per input size and dilation."""
  check_padding(padding)
  if padding == 'same':
    return 'SAME'
  return same_padding(kernel_size, dilation)


def check_padding(padding: str):
  """The one check of the `padding` option's value (stems.check_padding adds the stem rule)."""
  if padding not in PADDINGS:
    raise OptionError(f"padding must be 'torch' or 'same', got {padding!r}.", choices=PADDINGS)


def subsample(x, strides: Sequence[int]):
  """Every `strides`-th position of (batch, *spatial, channels): what a 1x1 convolution with
  these strides reads."""
  return x[(slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)]


def zero_pad_shortcut(x, out_features: int, strides: Sequence[int]):
  """Option A of He et al. 2015 §4.2: parameter-free identity with stride subsampling and
  zero-filled extra channels."""
  x = subsample(x, strides)
  extra = out_features - x.shape[-1]
  if extra < 0:
    raise ModelError(f'shortcut A cannot reduce channels ({x.shape[-1]} -> {out_features}); '
                     "use shortcut='B' or 'C'.")
  if extra:
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
  return x


def avg_pool_shortcut(x, strides: Sequence[int], dilation: int = 1):
  """ResNet-D's shortcut pool (He et al. 2019, "Bag of Tricks" §4.1): average over
  non-overlapping `strides` windows, so the 1x1 projection after it (stride 1) reads every
  input position instead of one in four. As timm's AvgPool2d(ceil_mode=True,
  count_include_pad=False): an odd side gets a last, partial window averaged over its valid
  positions, giving ceil(size / stride) outputs like the 3x3/2 convolution of the branch.
  In a dilated stage (stride 1, `dilation` > 1) timm still pools, 2x2 at stride 1 over the
  input zero-padded by one at the end of each axis (its AvgPool2dSame), zeros counted."""
  if all(s == 1 for s in strides):
    if dilation == 1:
      return x
    n = len(strides)
    return nn.avg_pool(x, (2,) * n, (1,) * n, padding=[(0, 1)] * n, count_include_pad=True)
  pads = [(0, -size % s) for size, s in zip(x.shape[1:-1], strides)]
  return nn.avg_pool(x, tuple(strides), tuple(strides), padding=pads, count_include_pad=False)


def check_shortcut(shortcut: str):
  """The one check of the `shortcut` option's value (He et al. 2015 §4.2's options)."""
  if shortcut not in SHORTCUT_TYPES:
    raise OptionError(f'shortcut must be one of {", ".join(SHORTCUT_TYPES)}, got {shortcut!r}.',
                      choices=SHORTCUT_TYPES)


def needs_projection(shortcut: str, in_features: int, out_features: int, strides) -> bool:
  """Whether a block's shortcut is a learned projection under options A/B/C."""
  check_shortcut(shortcut)
  if shortcut == 'C':
    return True
  if shortcut == 'A':
    return False
  return in_features != out_features or any(s != 1 for s in strides)


class PointwiseConv(nn.Module):
  """A 1x1 (or 1x1x1) convolution computed as a matrix product over channels: the same
  parameter ('kernel', shape (1, ..., 1, in, out)) and the same result as `nn.Conv`. Faster on
  XLA:CPU (docs/benchmarks.md): XLA runs the product's gradients as matrix products, a 1x1
  convolution's weight gradient far slower.

  The product is taken on (positions, channels) matrices, not on the image-shaped array: with
  the image shape XLA:CPU copies each weight gradient's cotangent into a transposed layout
  first (a profile of resnet50's train step in docs/benchmarks.md)."""
  features: int
  strides: Sequence[int]
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        (1,) * (x.ndim - 2) + (x.shape[-1], self.features), self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(subsample(x, self.strides), kernel, dtype=self.dtype)
    matrix = kernel.reshape(kernel.shape[-2:])
    rows = x.reshape(-1, x.shape[-1])
    product = jax.lax.dot_general(rows, matrix, (((1,), (0,)), ((), ())))
    return product.reshape(x.shape[:-1] + (self.features,))


class DropPath(nn.Module):
  """Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample.

  At train time a kept branch is divided by the keep probability, so the expectation equals the
  eval-time output, where the branch is always kept and never scaled.
  """
  rate: float

  @nn.compact
  def __call__(self, branch, deterministic: bool):
    # `rate` may be traced (a scanned stage passes each block's rate as data).
    if deterministic or (isinstance(self.rate, (int, float)) and self.rate == 0.0):
      return branch
    keep = 1.0 - self.rate
    mask_shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, mask_shape)
    return jnp.where(mask, branch / keep, jnp.zeros_like(branch))


def drop_path_rates(drop_path_rate: float, num_blocks: int):
  """Linear decay rule of Huang et al. 2016: block l of L drops with probability l/L * p_L."""
  return [drop_path_rate * (i + 1) / num_blocks for i in range(num_blocks)]


def cross_replica_mean(axis_name: str):
  """`pmean` over `axis_name` whose gradient is the `pmean` of the cotangents.

  The global loss is the mean of the replicas' losses, so d loss / d x_i collects every
  replica's cotangent of the shared statistics. Writing the rule out makes cross-replica
  BatchNorm exact under old pmap, new (shard_map based) pmap and shard_map alike, whose own
  transposes of psum differ (measured: tests/test_parallel.py).
  """
  @jax.custom_vjp
  def mean(x):
    return jax.lax.pmean(x, axis_name)

  def forward(x):
    return mean(x), None

  def backward(_, cotangent):
    return (jax.lax.pmean(cotangent, axis_name),)

  mean.defvjp(forward, backward)
  return mean


class BatchNorm(nn.Module):
  """BatchNorm over all axes but the last, as torch.nn.BatchNorm2d computes and keeps it.

  eps 1e-5 and momentum 0.1 (written 0.9 here: the weight of the old value). Training
  normalises by the batch's biased variance and updates `var` with the unbiased one,
  n / (n - 1) times it, n the elements per channel over every replica (torch's running_var).
  Statistics and normalisation run in promote(float32, dtype): float32 under bfloat16, float16
  or float32 compute, float64 under float64; the running statistics are stored in
  promote(float32, param_dtype). The variance is two-pass (`batch_statistics`): the one-pass
  E[x^2] - E[x]^2 loses every digit when |mean| >> std (docs/benchmarks.md measures both).
  """
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: Optional[str] = None
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    compute = jnp.promote_types(jnp.float32, self.dtype or x.dtype)
    stored = jnp.promote_types(jnp.float32, self.param_dtype)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), stored)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), stored)
    scale = self.param('scale', self.scale_init, (features,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (features,), self.param_dtype)
    x = jnp.asarray(x, compute)
    if self.use_running_average:
      mean, var = (jnp.asarray(v.value, compute) for v in (running_mean, running_var))
    else:
      # Initialising runs outside any device map (the Flax ImageNet example calls model.init
      # with train=True before pmap), so no collective then, as flax's BatchNorm does; the
      # statistics only shape the variables, which init never updates.
      axis_name = None if self.is_initializing() else self.axis_name
      mean, var, count = batch_statistics(x, axis_name)
      if not self.is_initializing():
        m = self.momentum
        unbiased = var * (count / max(count - 1, 1))
        for variable, value in ((running_mean, mean), (running_var, unbiased)):
          value = jax.lax.stop_gradient(value)
          variable.value = jnp.asarray(m * variable.value + (1 - m) * value, stored)
    multiplier = jnp.asarray(scale, compute) * jax.lax.rsqrt(var + self.epsilon)
    y = (x - mean) * multiplier + jnp.asarray(bias, compute)
    return jnp.asarray(y, self.dtype)


def batch_statistics(x, axis_name: Optional[str] = None):
  """(mean, biased variance, n) per channel over all axes but the last, and over the replicas
  of `axis_name` when given; n counts the elements per channel on all replicas together."""
  axes = tuple(range(x.ndim - 1))
  count = math.prod(x.shape[:-1])
  reduce = lambda value: value
  if axis_name is not None:
    reduce = cross_replica_mean(axis_name)
    count *= jax.lax.psum(1, axis_name)
  # Corrected two-pass (Chan, Golub & LeVeque 1983): a first pass estimates the mean; the
  # second sums the deviations from it and their squares, which corrects the mean and removes
  # the estimate's own rounding error from the variance. One collective per pass.
  shift = reduce(jnp.mean(x, axes))
  centred = x - shift
  residual, mean_square = reduce((jnp.mean(centred, axes), jnp.mean(jnp.square(centred), axes)))
  return shift + residual, jnp.maximum(mean_square - jnp.square(residual), 0.0), count


# BiT's convolutions as timm computes them (StdConv2d(eps=1e-8)): torch's batch_norm over each
# output channel's weights, so the biased variance.
WEIGHT_STANDARDIZATION_EPSILON = 1e-8
GROUP_NORM_GROUPS = 32  # Wu & He 2018's default, and BiT's


def standardize_kernel(kernel, epsilon: float = WEIGHT_STANDARDIZATION_EPSILON):
  """Weight Standardization (Qiao et al. 2019): each output channel's weights (the last axis)
  shifted to zero mean and scaled to unit variance, computed in float32 at least and returned
  in the kernel's dtype."""
  compute = jnp.promote_types(jnp.float32, kernel.dtype)
  k = jnp.asarray(kernel, compute)
  axes = tuple(range(k.ndim - 1))
  centred = k - jnp.mean(k, axes)
  variance = jnp.mean(jnp.square(centred), axes)
  return jnp.asarray(centred * jax.lax.rsqrt(variance + epsilon), kernel.dtype)


class _StandardizedKernel:
  """Mixin: the module reads its 'kernel' parameter standardized. (Not `nn.map_variables`:
  under flax 0.11 it hides the params from a module applied with mutable=['batch_stats'].)"""

  @nn.nowrap
  def param(self, name, *args, **kwargs):
    value = super().param(name, *args, **kwargs)
    return standardize_kernel(value) if name == 'kernel' else value


_STANDARDIZED = {}


def weight_standardized(module_cls):
  """`module_cls`, a convolution whose parameter is 'kernel', reading that kernel standardized.
  The stored parameter (name, shape, init) is the plain convolution's, so weight files and
  the other options (`PointwiseConv`, `stems.StemConv`) apply unchanged."""
  if module_cls not in _STANDARDIZED:
    _STANDARDIZED[module_cls] = type(f'WeightStandardized{module_cls.__name__}',
                                     (_StandardizedKernel, module_cls), {})
  return _STANDARDIZED[module_cls]
