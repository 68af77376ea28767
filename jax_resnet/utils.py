"""Helpers on variable trees."""

import importlib
import math
import os
import sys

import jax


def count_params(params) -> int:
  """Number of trainable parameters in a params tree (arrays or ShapeDtypeStructs), counted as
  torchvision counts them: BatchNorm scale and bias included, running statistics not."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def load_recipe(name: str, *args):
  """`configs/<name>.py`'s get_config(*args), from the source checkout this package lives in
  (the recipes are files beside the package, not part of it)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.exists(os.path.join(root, 'configs', f'{name}.py')):
    raise FileNotFoundError(f'configs/{name}.py not found next to {root}/jax_resnet; the '
                            'recipes ship with the source checkout (git clone), not the wheel.')
  if root not in sys.path:
    sys.path.insert(0, root)
  return importlib.import_module(f'configs.{name}').get_config(*args)
