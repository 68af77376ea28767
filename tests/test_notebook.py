"""The Colab notebook: valid, keeps the runtime's jax/flax, calls train_and_evaluate."""

import ast
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _code_cells():
  with open(os.path.join(ROOT, 'notebooks', 'colab_tpu.ipynb')) as f:
    notebook = json.load(f)
  assert notebook['nbformat'] == 4
  return [''.join(c['source']) for c in notebook['cells'] if c['cell_type'] == 'code']


def test_code_cells_are_python_apart_from_shell_lines():
  cells = _code_cells()
  assert len(cells) == 4
  for source in cells:
    python = '\n'.join(line for line in source.splitlines() if not line.lstrip().startswith('!'))
    ast.parse(python)


def test_notebook_never_installs_jax_or_flax_over_the_runtime():
  shell = [line for cell in _code_cells() for line in cell.splitlines() if line.startswith('!')]
  installs = [line for line in shell if 'pip install' in line]
  assert installs == ['!pip install -q -e {PROJECT}', '!pip install -q tensorflow-cpu']
  assert not any(word in line for line in installs for word in ('jax==', 'flax', '-U', 'upgrade'))


def test_prepare_runs_after_installing_tensorflow_in_the_same_cell():
  """The TPU runtime's image ships no TensorFlow, which TFDS's prepare needs."""
  cell = next(c for c in _code_cells() if 'jax_resnet.data prepare' in c)
  lines = cell.splitlines()
  install = lines.index('!pip install -q tensorflow-cpu')
  prepare = next(i for i, line in enumerate(lines) if 'jax_resnet.data prepare' in line)
  assert install < prepare


def test_recipes_load_by_path_without_sys_path():
  cells = _code_cells()
  assert not any('sys.path' in cell or 'from configs' in cell for cell in cells)
  assert sum('jr.load_config(' in cell for cell in cells) == 2
  assert not any('OWNER' in cell for cell in cells)  # no placeholder clone URL


def test_notebook_trains_through_the_importable_entry_point():
  assert sum('train_and_evaluate(config' in cell for cell in _code_cells()) == 2
