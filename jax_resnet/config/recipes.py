"""Loading a recipe: a Python file whose `get_config(*args)` returns a ConfigDict.

    config = jax_resnet.load_config('r50:resnet101')           # a shipped recipe, by name
    config = jax_resnet.load_config('my_recipes/own.py:arg')   # a file of your own

The shipped recipes are written in the repository's top-level configs/ and packaged from there
as `jax_resnet.recipes` (pyproject.toml maps the folder), so a bare name loads the same from a
wheel as from a source tree. A file is loaded by path (importlib), as `train.py --config` loads
it: nothing is added to `sys.path`, so recipes import only from installed packages, and one
recipe reuses another with `load_config(name, relative_to=__file__)`.
"""

import importlib.machinery
import importlib.util
import os

import ml_collections

from jax_resnet.errors import ConfigError

# A source tree run without installing (PYTHONPATH=<checkout>): configs/ beside the package is
# what pyproject.toml packages as jax_resnet.recipes.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recipes_directory() -> str:
  """The folder of the shipped recipes: the source tree's configs/ when this package runs from
  one, else the installed `jax_resnet.recipes` package."""
  source = os.path.join(_SOURCE_ROOT, 'configs')
  if (os.path.isfile(os.path.join(source, '__init__.py'))
      and os.path.isfile(os.path.join(_SOURCE_ROOT, 'pyproject.toml'))):
    return source
  spec = importlib.util.find_spec('jax_resnet.recipes')
  return list(spec.submodule_search_locations)[0]


def list_recipes() -> list:
  """The shipped recipes' names ('cifar10', 'default', 'r50', ...)."""
  return sorted(name[:-3] for name in os.listdir(recipes_directory())
                if name.endswith('.py') and not name.startswith('_'))


def recipe_path(name: str, relative_to: str = '') -> str:
  """A recipe file: an existing path, a path relative to `relative_to`'s directory, or a bare
  name ('r50' or 'r50.py') of a shipped recipe."""
  candidates = [name]
  if relative_to:
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(relative_to)), name))
  bare = name if name.endswith('.py') else f'{name}.py'
  if os.path.basename(bare) == bare:
    candidates.append(os.path.join(recipes_directory(), bare))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f'config recipe {name!r} not found (looked at {", ".join(candidates)}); pass a path to a '
      f'recipe file or a shipped recipe\'s name: {", ".join(list_recipes())}.')


def check_recipe_file(path: str):
  """Refuses a recipe path that cannot be one (a ConfigError naming it): a file whose name does
  not end in .py (`--config notes.md`), or one this user cannot read."""
  if not path.endswith('.py'):
    raise ConfigError(f'config file {path} is not a Python recipe (its name does not end in '
                      '.py); a recipe is a .py file whose get_config() returns an '
                      'ml_collections.ConfigDict.')
  try:
    with open(path, 'rb'):
      pass
  except OSError as error:
    raise ConfigError(f'config file {path} cannot be read ([Errno {error.errno}] '
                      f'{error.strerror}); make it readable for this user, or pass another '
                      'recipe.') from None


def load_config(spec: str, relative_to: str = '') -> ml_collections.ConfigDict:
  """'name', 'path.py' or either with ':argument' (the argument goes to get_config, as with
  `--config path.py:argument`) -> the recipe's ConfigDict. A file that is not a readable .py,
  without `get_config`, or whose get_config returns something other than a ConfigDict, is a
  ConfigError naming the file; an error in the recipe's own code (a SyntaxError, an exception
  in get_config) is raised as it is: it is the user's code, its traceback the useful part."""
  name, _, argument = spec.partition(':')
  path = recipe_path(name, relative_to)
  check_recipe_file(path)
  module_name = 'jax_resnet_recipe_' + os.path.splitext(os.path.basename(path))[0]
  loader = importlib.machinery.SourceFileLoader(module_name, path)
  module_spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise ConfigError(f'config file {path} defines no get_config(); a recipe is a Python file '
                     'whose get_config() returns an ml_collections.ConfigDict.')
  config = get_config(argument) if argument else get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'config file {path}: get_config() returned {type(config).__name__}, not '
                     'an ml_collections.ConfigDict; end it with `return config`.')
  return config
