"""`jax_resnet.export`: a serialized jax.export program that a process without jax_resnet
loads and calls at any batch size, and its CLI."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.export  # noqa: F401  (jax 0.7 does not import the submodule itself)
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import export, predict, weights

TOLERANCE = 1e-5  # float32, relative to the largest logit


def _relative(ours, expected):
  assert ours.shape == expected.shape
  return float(np.max(np.abs(ours - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope='module')
def cifar_net():
  """resnet20 with random weights and batch statistics away from their init."""
  model = jr.create_model('resnet20')
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  keys = iter(jax.random.split(jax.random.key(1), 1000))
  stats = jax.tree.map(lambda v: v + 0.3 * jax.random.uniform(next(keys), v.shape),
                       variables['batch_stats'])
  return model, {'params': variables['params'], 'batch_stats': stats}


@pytest.fixture(scope='module')
def exported(cifar_net):
  model, variables = cifar_net
  return export.export_model(model, variables, 32)


def _images(batch, side=32, seed=0):
  return np.random.default_rng(seed).standard_normal((batch, side, side, 3)).astype(np.float32)


# A process where `import jax_resnet` fails (checked), loading the program with jax alone.
_PLAIN_JAX = textwrap.dedent('''
    import importlib.abc, sys

    class BlockJaxResnet(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path, target=None):
        if name.split('.')[0] == 'jax_resnet':
          raise ImportError('jax_resnet is blocked in this process')

    sys.meta_path.insert(0, BlockJaxResnet())
    try:
      import jax_resnet  # noqa: F401
      blocked = False
    except ImportError:
      blocked = True
    import jax, jax.export, numpy as np
    with open(sys.argv[1], 'rb') as f:
      program = jax.export.deserialize(bytearray(f.read()))
    inputs = np.load(sys.argv[2])
    outputs = {k: np.asarray(program.call(inputs[k])) for k in inputs.files}
    loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'jax_resnet')
    np.savez(sys.argv[3], blocked=blocked, loaded=np.array(loaded, dtype=str),
             platforms=np.array(program.platforms), **outputs)
''')


def _run_plain_jax(tmp_path, program_path, inputs):
  np.savez(tmp_path / 'inputs.npz', **inputs)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['JAX_PLATFORMS'] = 'cpu'
  result = subprocess.run(
      [sys.executable, '-c', _PLAIN_JAX, str(program_path), str(tmp_path / 'inputs.npz'),
       str(tmp_path / 'outputs.npz')], env=env, cwd=tmp_path, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return np.load(tmp_path / 'outputs.npz')


def test_a_process_without_jax_resnet_gets_model_apply_logits_at_any_batch(
    tmp_path, cifar_net, exported):
  model, variables = cifar_net
  path = tmp_path / 'resnet20.jaxexport'
  path.write_bytes(exported.serialize())
  inputs = {'one': _images(1), 'three': _images(3, seed=1)}
  outputs = _run_plain_jax(tmp_path, path, inputs)
  assert bool(outputs['blocked']) and outputs['loaded'].size == 0
  assert list(outputs['platforms']) == ['cpu']
  for key, x in inputs.items():
    expected = np.asarray(model.apply(variables, x, train=False))
    assert outputs[key].shape == (len(x), 10)
    assert _relative(outputs[key], expected) <= TOLERANCE


def test_the_program_has_a_symbolic_batch_and_names_its_platform(exported):
  assert str(exported.in_avals[0].shape[0]) == 'batch'
  assert exported.in_avals[0].shape[1:] == (32, 32, 3)
  assert exported.in_avals[0].dtype == jnp.float32 and exported.out_avals[0].dtype == jnp.float32
  assert exported.platforms == ('cpu',)
  assert jax.export.deserialize(exported.serialize()).platforms == ('cpu',)


def test_lowering_for_cpu_cuda_and_tpu_at_once(cifar_net):
  model, variables = cifar_net
  program = export.export_model(model, variables, 32, platforms=('cpu', 'cuda', 'tpu'))
  loaded = jax.export.deserialize(program.serialize())
  assert loaded.platforms == ('cpu', 'cuda', 'tpu')
  x = _images(2, seed=2)
  expected = np.asarray(model.apply(variables, x, train=False))
  assert _relative(np.asarray(loaded.call(x)), expected) <= TOLERANCE


def test_bfloat16_compute_keeps_float32_input_and_output(cifar_net):
  model, variables = cifar_net
  program = export.export_model(model, variables, 32, dtype='bfloat16')
  assert (program.in_avals[0].dtype, program.out_avals[0].dtype) == (jnp.float32, jnp.float32)
  assert 'bf16' in program.mlir_module() and 'bf16' not in export.export_model(
      model, variables, 32).mlir_module()


@pytest.mark.parametrize('side, resize, crop, interpolation', [
    ((300, 280), 256, 224, 'bilinear'), ((40, 40), 36, 32, 'bilinear'),
    ((300, 280), 288, 288, 'bicubic'), ((50, 60), 64, 56, 'bicubic')])
def test_baked_preprocessing_equals_predicts(side, resize, crop, interpolation):
  from PIL import Image
  image = np.random.default_rng(3).integers(0, 256, side + (3,), dtype=np.uint8)
  spec = export.Preprocessing(resize, crop, interpolation)
  expected = predict.preprocess(Image.fromarray(image), resize, crop, interpolation, spec.mean,
                                spec.std)
  ours = np.asarray(export.preprocessing_function(spec, *side)(image[None]))[0]
  assert ours.shape == expected.shape == (crop, crop, 3)
  # The same 8-bit pixels (PIL's fixed-point resampling), then the same float32 arithmetic.
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def _cli(tmp_path, *argv):
  out = tmp_path / 'model.jaxexport'
  code = export.main([*argv, '--out', str(out)])
  return code, out


def test_cli_writes_the_program_and_its_description(tmp_path, cifar_net, capsys):
  model, variables = cifar_net
  npz = weights.save_npz(tmp_path / 'w.npz', variables)
  code, out = _cli(tmp_path, '--model', 'resnet20', '--weights', npz, '--image-size', '32')
  assert code == 0
  meta = json.loads((tmp_path / 'model.jaxexport.json').read_text())
  assert {k: meta[k] for k in ('model', 'tag', 'image_size', 'input_shape', 'input_dtype',
                               'output_shape', 'with_preprocessing', 'platforms',
                               'class_names')} == {
      'model': 'resnet20', 'tag': None, 'image_size': 32, 'input_shape': [None, 32, 32, 3],
      'input_dtype': 'float32', 'output_shape': [None, 10], 'with_preprocessing': False,
      'platforms': ['cpu'], 'class_names': None}
  assert meta['mean'] == list(export.Preprocessing().mean)
  program = jax.export.deserialize(bytearray(out.read_bytes()))
  x = _images(2, seed=4)
  expected = np.asarray(model.apply(variables, x, train=False))
  assert _relative(np.asarray(program.call(x)), expected) <= TOLERANCE
  assert capsys.readouterr().out.startswith(f'wrote {out} (')


@pytest.mark.slow  # test_predict_as_trained's export checks the baked preprocessing by default
def test_cli_bakes_the_tags_preprocessing_for_uint8_images(tmp_path):
  model = jr.create_model('resnet18')
  variables = model.init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)), train=False)
  npz = weights.save_npz(tmp_path / 'w.npz', variables, tag='resnet18.tv_in1k')
  code, out = _cli(tmp_path, '--model', 'resnet18', '--weights', npz, '--image-size', '240',
                   '--with-preprocessing', '--platforms', 'cpu')
  assert code == 0
  meta = json.loads((tmp_path / 'model.jaxexport.json').read_text())
  assert meta['tag'] == 'resnet18.tv_in1k' and meta['input_dtype'] == 'uint8'
  assert (meta['preprocessing']['resize'], meta['preprocessing']['crop']) == (256, 224)
  assert meta['class_names'] == weights.imagenet_classes()
  images = np.random.default_rng(6).integers(0, 256, (2, 240, 240, 3), dtype=np.uint8)
  program = jax.export.deserialize(bytearray(out.read_bytes()))
  prepare = export.preprocessing_function(export.Preprocessing(256, 224), 240, 240)
  expected = np.asarray(model.apply(variables, prepare(images), train=False))
  assert _relative(np.asarray(program.call(images)), expected) <= TOLERANCE


@pytest.mark.parametrize('argv, message', [
    (['--model', 'resnet_20', '--weights', 'w.npz'],
     "Unknown model 'resnet_20'. Did you mean resnet20"),
    (['--model', 'r3d_18', '--weights', 'w.npz'], 'r3d_18 takes video clips; export takes '
                                                   'image models.'),
    (['--model', 'resnet20'],
     'pass --weights FILE, or --tag TAG to bake in a published file.'),
    (['--model', 'resnet20', '--weights', 'w.npz', '--dtype', 'int8'],
     "--dtype must be one of float32, bfloat16, float16, got 'int8'."),
    (['--model', 'resnet20', '--weights', 'w.npz', '--platforms', 'cpu,gpu'],
     "--platforms takes distinct names from cpu, cuda, rocm, tpu, got 'cpu,gpu'."),
    (['--model', 'resnet20', '--weights', 'w.npz', '--image-size', '2'],
     '--image-size must be at least 4 for resnet20, got 2.'),
    (['--model', 'resnet20', '--weights', 'absent.npz'], 'weights file absent.npz not found.'),
    (['--model', 'resnet18', '--weights', 'w.npz', '--tag', 'resnet50.tv_in1k'],
     'weight tag resnet50.tv_in1k is for resnet50, not resnet18'),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, monkeypatch, argv,
                                                           message):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'w.npz').write_bytes(b'')
  argv = [*argv] if '--image-size' in argv else [*argv, '--image-size', '32']
  code = export.main([*argv, '--out', 'model.jaxexport'])
  err = capsys.readouterr().err
  assert code == 2 and err.count('\n') == 1 and 'Traceback' not in err
  assert err.startswith(f'export: error: {message}')
  assert sorted(os.listdir(tmp_path)) == ['w.npz']


def test_out_in_a_missing_directory_is_refused(tmp_path, capsys):
  code = export.main(['--model', 'resnet20', '--weights', 'w.npz', '--image-size', '32',
                      '--out', str(tmp_path / 'no' / 'model.jaxexport')])
  assert code == 2
  assert capsys.readouterr().err == (f'export: error: --out {tmp_path / "no" / "model.jaxexport"}'
                                     ': not a file path in an existing directory.\n')


def test_an_internal_bug_keeps_its_traceback(tmp_path, cifar_net):
  """A ValueError from inside the program is a bug, not bad input: the program does not turn
  it into a one-line refusal (only UserError is), so its traceback shows."""
  npz = weights.save_npz(tmp_path / 'w.npz', cifar_net[1])
  code = ('import sys\n'
          'from jax_resnet import inference\n'
          'def bug(*args, **kwargs):\n'
          '  raise ValueError("an internal bug")\n'
          'inference.tag_transform = bug\n'
          'from jax_resnet.__main__ import main\n'
          'sys.exit(main(sys.argv[1:]))\n')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / 'model.jaxexport'
  result = subprocess.run(
      [sys.executable, '-c', code, 'export', '--model', 'resnet20', '--weights', npz,
       '--image-size', '32', '--out', str(out)],
      capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': root}, timeout=300)
  assert (result.returncode, result.stdout) == (1, '')
  assert 'Traceback (most recent call last):' in result.stderr
  assert result.stderr.splitlines()[-1] == 'ValueError: an internal bug'
  assert 'export: error' not in result.stderr and not out.exists()
