"""Helpers on variable trees."""

import math

import jax


def count_params(params) -> int:
  """Number of trainable parameters in a params tree (arrays or ShapeDtypeStructs), counted as
  torchvision counts them: BatchNorm scale and bias included, running statistics not."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def created_file_mode() -> int:
  """The mode a plain file created now gets (0o666 less the umask): files written through
  `tempfile.mkstemp` (mode 0600) are given it before they are renamed into place, so weights,
  exports and records are as readable as any other file the user creates."""
  import os
  mask = os.umask(0o022)  # os offers no getter: set and restore at once
  os.umask(mask)
  return 0o666 & ~mask
