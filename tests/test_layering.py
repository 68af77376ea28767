"""The package's layers (docs/architecture.md, "Layers"): no module imports from a layer above
its own. Read from the source with `ast` (imports inside functions included); `LAYERS` is the
one statement of the order, lowest first."""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

import jax_resnet
from jax_resnet import stems
from jax_resnet.errors import OptionError

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'jax_resnet'

# Lowest first. A module belongs to the layer of its longest listed prefix.
LAYERS = (
    ('errors', ('jax_resnet.errors', 'jax_resnet.utils', 'jax_resnet.false_alarms')),
    ('layers', ('jax_resnet.layers', 'jax_resnet.blocks', 'jax_resnet.stems',
                'jax_resnet.remat')),
    ('models', ('jax_resnet.models', 'jax_resnet.video', 'jax_resnet.scan')),
    ('registry', ('jax_resnet.registry', 'jax_resnet.published', 'jax_resnet.model_facts')),
    ('data', ('jax_resnet.data',)),
    ('checkpoint_reader', ('jax_resnet.checkpoint_reader',)),
    ('weights', ('jax_resnet.weights', 'jax_resnet.nnx', 'jax_resnet.finetune')),
    ('training', ('jax_resnet.training',)),
    ('config', ('jax_resnet.config',)),
    ('inference', ('jax_resnet.inference',)),
    # The programs, and the package itself (`import jax_resnet` re-exports every layer).
    ('programs', ('jax_resnet', 'jax_resnet.__main__', 'jax_resnet.train_cli',
                  'jax_resnet.predict', 'jax_resnet.export', 'jax_resnet.onnx_export',
                  'jax_resnet.sharing', 'jax_resnet.push', 'jax_resnet.benchmark',
                  'jax_resnet.benchmark_memory', 'jax_resnet.benchmark_torch',
                  'jax_resnet.benchmark_data', 'jax_resnet.analysis',
                  'jax_resnet.data.__main__')),
)


def layer_of(module: str):
  """(rank, name) of the layer `module` belongs to; None if no prefix lists it."""
  best = None
  for rank, (name, prefixes) in enumerate(LAYERS):
    for prefix in prefixes:
      if module == prefix or module.startswith(prefix + '.'):
        if best is None or len(prefix) > best[0]:
          best = (len(prefix), rank, name)
  return best and best[1:]


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _is_module(name: str) -> bool:
  path = PACKAGE.parent.joinpath(*name.split('.'))
  return path.with_suffix('.py').exists() or (path / '__init__.py').exists()


def _facade_names() -> dict:
  """{name: module} of the package face's lazy attributes (`jax_resnet.create_model` is the
  registry's; `jax_resnet.nnx` the module)."""
  return dict(jax_resnet._ATTRIBUTES)


def imported_modules(source: str, module: str, facade: dict) -> set:
  """The jax_resnet modules `source` (the text of `module`) imports from."""
  found, package_aliases = set(), set()
  package = module if (PACKAGE.parent / module.replace('.', '/') / '__init__.py').exists() \
      else module.rpartition('.')[0]
  tree = ast.parse(source)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name == 'jax_resnet':
          package_aliases.add(alias.asname or 'jax_resnet')
        elif alias.name.startswith('jax_resnet.'):
          found.add(alias.name)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                        + ([base] if base else []))
      if base != 'jax_resnet' and not base.startswith('jax_resnet.'):
        continue
      for alias in node.names:
        target = f'{base}.{alias.name}'
        if _is_module(target):
          found.add(target)
        elif base == 'jax_resnet':
          found.add(facade[alias.name])
        else:
          found.add(base)
  for node in ast.walk(tree):  # jax_resnet.create_model(...) after `import jax_resnet`
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in package_aliases):
      target = f'jax_resnet.{node.attr}'
      found.add(target if _is_module(target) else facade.get(node.attr, 'jax_resnet'))
  return found


def upward_imports(source: str, module: str, facade: dict) -> list:
  """'module -> target (layer -> higher layer)' for each import of a higher layer."""
  rank, name = layer_of(module)
  found = []
  for target in sorted(imported_modules(source, module, facade)):
    target_rank, target_name = layer_of(target)
    if target_rank > rank:
      found.append(f'{module} -> {target} ({name} -> {target_name})')
  return found


def face_reaches(source: str, module: str) -> list:
  """'module: how' for each reach through the package face (`import jax_resnet`, `from
  jax_resnet import create_model`, `jax_resnet.create_model` after `import jax_resnet.x`): a
  module below the programs names the submodule it needs, so it never runs the face's table
  nor depends on what the face re-exports."""
  found, bound = [], False
  tree = ast.parse(source)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name == 'jax_resnet':
          found.append(f'{module}: import jax_resnet')
        bound |= alias.name.startswith('jax_resnet') and alias.asname is None
    elif isinstance(node, ast.ImportFrom) and node.module == 'jax_resnet' and not node.level:
      found += [f'{module}: from jax_resnet import {alias.name}' for alias in node.names
                if not _is_module(f'jax_resnet.{alias.name}')]
  for node in ast.walk(tree) if bound else ():
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id == 'jax_resnet' and not _is_module(f'jax_resnet.{node.attr}')):
      found.append(f'{module}: jax_resnet.{node.attr}')
  return sorted(set(found))


def _modules():
  return {_module_name(path): path.read_text() for path in sorted(PACKAGE.rglob('*.py'))}


def test_every_module_has_a_layer():
  assert [m for m in _modules() if layer_of(m) is None] == []


def test_no_module_imports_from_a_layer_above_its_own():
  facade = _facade_names()
  found = [line for module, source in _modules().items()
           for line in upward_imports(source, module, facade)]
  assert found == []


def test_no_module_below_the_programs_reaches_through_the_package_face():
  programs = len(LAYERS) - 1
  found = [line for module, source in _modules().items() if layer_of(module)[0] < programs
           for line in face_reaches(source, module)]
  assert found == []


def test_the_face_check_finds_each_form_of_reach():
  source = ('import jax_resnet\n'
            'import jax_resnet.weights.tags\n'
            'from jax_resnet import data, create_model\n'
            'def f():\n'
            '  return jax_resnet.model_info, jax_resnet.weights.tags\n')
  assert face_reaches(source, 'jax_resnet.training.setup') == [
      'jax_resnet.training.setup: from jax_resnet import create_model',
      'jax_resnet.training.setup: import jax_resnet',
      'jax_resnet.training.setup: jax_resnet.model_info']
  assert face_reaches('import jax_resnet.registry\nfrom jax_resnet import data\n'
                      'x = jax_resnet.registry.create_model\n', 'jax_resnet.nnx') == []


def test_the_check_finds_an_upward_import_in_each_form():
  """The reader sees every way the code imports: from-imports, module imports, a function's
  lazy import and an attribute of the package."""
  facade = _facade_names()
  source = ('import jax_resnet\n'
            'from jax_resnet.config import boundary\n'
            'def f():\n'
            '  import jax_resnet.training.loop\n'
            '  return jax_resnet.load_config, jax_resnet.create_model\n')
  assert upward_imports(source, 'jax_resnet.weights.files', facade) == [
      'jax_resnet.weights.files -> jax_resnet.config (weights -> config)',
      'jax_resnet.weights.files -> jax_resnet.config.boundary (weights -> config)',
      'jax_resnet.weights.files -> jax_resnet.training.loop (weights -> training)']
  assert upward_imports('from jax_resnet import data\n', 'jax_resnet.registry', facade) == [
      'jax_resnet.registry -> jax_resnet.data (registry -> data)']


def test_the_stem_conv_refusal_carries_the_stems_choices_for_the_boundary():
  """The boundary words its stem_conv line from the stems' own choices (no copy of the list),
  adding its 'auto'; tests/test_stem_options.py checks the line itself."""
  with pytest.raises(OptionError) as err:
    stems.check_stem_conv('fast')
  assert isinstance(err.value, ValueError)  # the model library's contract
  assert err.value.choices == stems.STEM_CONVS == ('conv', 'pad_channels', 'space_to_depth')


# What a research user who imports the package or one block must not pay for: the trainer,
# the data pipelines, the weight readers and the heavy libraries behind them.
NOT_LOADED_BY_THE_FACE = ('jax_resnet.training', 'jax_resnet.data', 'jax_resnet.weights',
                          'jax_resnet.config', 'jax_resnet.checkpoint_reader', 'optax',
                          'ml_collections', 'PIL', 'orbax', 'grain', 'torch')


def _loaded_after(statements: str) -> list:
  """The sorted sys.modules of a fresh interpreter after running `statements`."""
  code = f'import json, sys\n{statements}\nprint(json.dumps(sorted(sys.modules)))'
  env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
  run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       check=True, timeout=120)
  return json.loads(run.stdout.splitlines()[-1])


def _heavy(modules) -> list:
  return [m for m in modules
          if any(m == name or m.startswith(name + '.') for name in NOT_LOADED_BY_THE_FACE)]


def test_the_package_and_one_block_load_no_trainer_data_or_weights_module():
  assert _heavy(_loaded_after('import jax_resnet\nimport jax_resnet.layers')) == []
  # The same check sees a load when a face name from the trainer's side is asked for.
  loaded = _heavy(_loaded_after('import jax_resnet\njax_resnet.load_config'))
  assert {'jax_resnet.config', 'ml_collections', 'optax'} <= set(loaded)


def test_every_public_name_resolves_from_the_face():
  namespace = {}
  exec(f'from jax_resnet import {", ".join(jax_resnet.__all__)}', namespace)
  for name in jax_resnet.__all__:
    module = jax_resnet._ATTRIBUTES[name]
    expected = importlib.import_module(module)
    if module.rpartition('.')[2] != name:
      expected = getattr(expected, name)
    assert namespace[name] is expected is getattr(jax_resnet, name), name
  assert set(jax_resnet.__all__) <= set(dir(jax_resnet))
  assert jax_resnet.nnx is importlib.import_module('jax_resnet.nnx')
  with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
    jax_resnet.no_such_name  # noqa: B018


def _refusal(call):
  with pytest.raises(OptionError) as err:
    call()
  return err.value


def test_every_fixed_set_model_option_raises_option_error_with_its_choices():
  """One check per option, each an OptionError (a UserError and a ValueError) carrying the
  valid values; create_model's line names the model, the type and choices kept."""
  import jax
  import jax.numpy as jnp
  from jax_resnet import blocks, layers, models, remat, video
  from jax_resnet.errors import ModelError, UserError
  refusals = {
      'shortcut': (lambda: layers.check_shortcut('D'), ('A', 'B', 'C')),
      'padding': (lambda: layers.check_padding('valid'), ('torch', 'same')),
      'norm': (lambda: models.check_norm('layer'), ('batch', 'group')),
      'stem': (lambda: stems.stem_spec('basic', 'image'), ('imagenet', 'deep', 'bit', 'cifar')),
      'output_stride': (lambda: models.stage_plan(4, 4, 4), (8, 16, 32)),
      'video output_stride': (lambda: video.check_video_output_stride(16), (32,)),
      'block': (lambda: blocks.block_class('wide', False), ('basic', 'bottleneck')),
      'remat': (lambda: remat.check_remat('all'), ('none', 'block', 'save_convs')),
      'StemConv method': (lambda: jax.eval_shape(
          stems.StemConv(8, (7, 7), (2, 2), 'fast').init, jax.random.key(0),
          jnp.zeros((1, 16, 16, 3))), ('pad_channels', 'space_to_depth')),
      'conv_type': (lambda: jax.eval_shape(
          lambda key, x: jax_resnet.create_model('r3d_18', conv_types=('4d',) * 4).init(
              key, x, train=False), jax.random.key(0), jnp.zeros((1, 4, 16, 16, 3))),
          ('3d', '2d', '2+1d')),
  }
  found = {name: _refusal(call) for name, (call, _) in refusals.items()}
  assert {name: error.choices for name, error in found.items()} == {
      name: choices for name, (_, choices) in refusals.items()}
  assert all(isinstance(e, UserError) and isinstance(e, ValueError) for e in found.values())
  named = _refusal(lambda: jax_resnet.create_model('resnet50', norm='layer'))
  assert (str(named), named.choices) == (
      "resnet50: norm must be 'batch' or 'group', got 'layer'.", ('batch', 'group'))
  with pytest.raises(ModelError) as err:  # not a fixed set: the model library's own type
    jax_resnet.create_model('resnet20', drop_path_rate=1.5)
  assert str(err.value) == 'resnet20: drop_path_rate must be in [0, 1), got 1.5.'
  assert not isinstance(err.value, OptionError)
