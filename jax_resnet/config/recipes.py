"""Loading a recipe: a Python file whose `get_config(*args)` returns a ConfigDict.

    config = jax_resnet.load_config('configs/r50.py:resnet101')

The file is loaded by path (importlib), as `train.py --config` loads it: nothing is added to
`sys.path`, so recipes import only from installed packages, and one recipe reuses another with
`load_config(name, relative_to=__file__)`.
"""

import importlib.util
import os

import ml_collections

_REPOSITORY_CONFIGS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs')


def recipe_path(name: str, relative_to: str = '') -> str:
  """A recipe file: an existing path, a path relative to `relative_to`'s directory, or a bare
  name ('r50') in the configs/ folder of the checkout this package was installed from."""
  candidates = [name]
  if relative_to:
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(relative_to)), name))
  bare = name if name.endswith('.py') else f'{name}.py'
  candidates.append(os.path.join(_REPOSITORY_CONFIGS, bare))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f'config recipe {name!r} not found (looked at {", ".join(candidates)}); pass a path to a '
      "recipe file such as 'configs/r50.py' (recipes ship with the source checkout).")


def load_config(spec: str, relative_to: str = '') -> ml_collections.ConfigDict:
  """'path.py' or 'path.py:argument' (the argument goes to get_config, as with
  `--config path.py:argument`) -> the recipe's ConfigDict."""
  name, _, argument = spec.partition(':')
  path = recipe_path(name, relative_to)
  module_name = 'jax_resnet_recipe_' + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()
