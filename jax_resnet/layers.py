"""Small building pieces shared by every block: He init, shortcuts, stochastic depth."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# He et al. 2015 ("Delving deep into rectifiers"), fan_out mode as torchvision's ResNet uses.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

SHORTCUT_TYPES = ('A', 'B', 'C')


def same_padding(kernel_size: Sequence[int]):
  """Symmetric padding k//2 per side, as torch's `padding=k//2`.

  Flax's 'SAME' pads (0, 1) for stride 2 on even inputs; torch pads (1, 1). Explicit symmetric
  padding keeps the two numerically identical, which the weight import relies on.
  """
  return [(k // 2, k // 2) for k in kernel_size]


def zero_pad_shortcut(x, out_features: int, strides: Sequence[int]):
  """Option A of He et al. 2015 §4.2: parameter-free identity with stride subsampling and
  zero-filled extra channels."""
  index = (slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)
  x = x[index]
  extra = out_features - x.shape[-1]
  if extra < 0:
    raise ValueError(f'shortcut A cannot reduce channels ({x.shape[-1]} -> {out_features}); '
                     "use shortcut='B' or 'C'.")
  if extra:
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
  return x


def needs_projection(shortcut: str, in_features: int, out_features: int, strides) -> bool:
  """Whether a block's shortcut is a learned projection under options A/B/C."""
  if shortcut not in SHORTCUT_TYPES:
    raise ValueError(f"shortcut must be one of {SHORTCUT_TYPES}, got {shortcut!r}.")
  if shortcut == 'C':
    return True
  if shortcut == 'A':
    return False
  return in_features != out_features or any(s != 1 for s in strides)


class DropPath(nn.Module):
  """Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample.

  At train time a kept branch is divided by the keep probability, so the expectation equals the
  eval-time output, where the branch is always kept and never scaled.
  """
  rate: float

  @nn.compact
  def __call__(self, branch, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return branch
    keep = 1.0 - self.rate
    mask_shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, mask_shape)
    return jnp.where(mask, branch / keep, jnp.zeros_like(branch))


def drop_path_rates(drop_path_rate: float, num_blocks: int):
  """Linear decay rule of Huang et al. 2016: block l of L drops with probability l/L * p_L."""
  return [drop_path_rate * (i + 1) / num_blocks for i in range(num_blocks)]
