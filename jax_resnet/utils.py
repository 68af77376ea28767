"""Helpers on variable trees."""

import math

import jax


def count_params(params) -> int:
  """Number of trainable parameters in a params tree (arrays or ShapeDtypeStructs), counted as
  torchvision counts them: BatchNorm scale and bias included, running statistics not."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
