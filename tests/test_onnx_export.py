"""ONNX export (jax_resnet.onnx_export, `jax-resnet export --format onnx`): ONNX Runtime (CPU)
on the written file against model.apply, at batch 1 and 3, for every image family (tiny
stage_sizes, small images), output_stride=16, return_features and baked preprocessing."""

import sys

import jax
import numpy as np
import pytest

import jax_resnet as jr

ort = pytest.importorskip('onnxruntime', reason='the [onnx] extra is not installed')
pytest.importorskip('jax2onnx', reason='the [onnx] extra is not installed')

from jax_resnet import export, onnx_export  # noqa: E402  (after the skips)

TINY = dict(stage_sizes=(1, 1, 1, 1))


def _relative(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _check(tmp_path, name, side, return_features=False, preprocessing=None, **options):
  """Exports `name`, writes the file, runs it in ONNX Runtime at batch 1 and 3; returns the
  worst relative error against model.apply and the session's input shape."""
  model = jr.create_model(name, **options)
  x = jax.random.normal(jax.random.key(1), (3, side, side, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  if 'batch_stats' in variables:  # non-trivial running statistics
    _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    variables = {'params': variables['params'], 'batch_stats': updates['batch_stats']}
  image_side = side if preprocessing is None else side + 8
  proto = onnx_export.export_onnx(model, variables, image_side, preprocessing, return_features)
  path = onnx_export.write_onnx(str(tmp_path / f'{name}.onnx'), proto)
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  worst = 0.0
  for batch in (1, 3):
    if preprocessing is None:
      images = np.asarray(x[:batch])
      inputs = images
    else:
      images = np.random.RandomState(batch).randint(0, 256, (batch, image_side, image_side, 3))
      images = images.astype(np.uint8)
      inputs = export.preprocessing_function(preprocessing, image_side, image_side)(images)
    reference = model.apply(variables, inputs, train=False, return_features=return_features)
    references = [reference[k] for k in sorted(reference)] if return_features else [reference]
    outputs = session.run(None, {onnx_export.INPUT_NAME: images})
    assert len(outputs) == len(references)
    worst = max([worst] + [_relative(o, r) for o, r in zip(outputs, references)])
  return worst, session.get_inputs()[0].shape, [o.name for o in session.get_outputs()]


def test_a_cifar_net_runs_in_onnx_runtime_at_any_batch(tmp_path):
  worst, input_shape, outputs = _check(tmp_path, 'resnet20', 16, stage_sizes=(1, 1, 1))
  assert worst <= 1e-5
  assert input_shape == ['batch', 16, 16, 3] and outputs == ['logits']


FAMILIES = [('resnet18', TINY), ('resnet18d', TINY), ('preact_resnet18', TINY),
            ('resnext50_32x4d', TINY), ('wide_resnet50_2', TINY), ('bit_resnet50x1', TINY),
            ('resnet50d', dict(TINY, output_stride=16)), ('plain20', {})]


@pytest.mark.slow
@pytest.mark.parametrize('name, options', FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_image_family_equals_model_apply(tmp_path, name, options):
  side = 16 if name == 'plain20' else 32
  worst, input_shape, _ = _check(tmp_path, name, side, **options)
  assert worst <= 1e-5
  assert input_shape[0] == 'batch'


@pytest.mark.slow
def test_feature_levels_are_outputs_named_by_level(tmp_path):
  worst, _, outputs = _check(tmp_path, 'resnet18', 32, return_features=True, **TINY)
  assert worst <= 1e-5
  assert outputs == ['logits', 'pre_logits', 'stage1', 'stage2', 'stage3', 'stage4', 'stem']


@pytest.mark.slow
def test_baked_preprocessing_takes_uint8_images(tmp_path):
  preprocessing = export.Preprocessing(resize=36, crop=32, interpolation='bicubic')
  worst, input_shape, _ = _check(tmp_path, 'resnet18', 32, preprocessing=preprocessing, **TINY)
  assert worst <= 1e-5
  assert input_shape == ['batch', 40, 40, 3]


def test_video_models_and_bfloat16_are_refused_naming_them():
  model = jr.create_model('r3d_18')
  with pytest.raises(onnx_export.OnnxExportError) as err:
    onnx_export.onnx_ready(model, {})
  assert str(err.value).startswith('ONNX export takes image models; video models')
  with pytest.raises(onnx_export.OnnxExportError) as err:
    onnx_export.export_onnx(jr.create_model('resnet20'), {}, 16, dtype='bfloat16')
  assert str(err.value).startswith('compute dtype bfloat16 cannot be expressed')


def _cli(*argv):
  from jax_resnet.__main__ import main
  return main(['export', *argv])


@pytest.fixture(scope='module')
def resnet20_file(tmp_path_factory):
  model = jr.create_model('resnet20')
  variables = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32), train=False)
  path = str(tmp_path_factory.mktemp('w') / 'r20.npz')
  return jr.weights.save_npz(path, jax.device_get(variables)), model, variables


@pytest.mark.slow
def test_cli_writes_an_onnx_file(tmp_path, capsys, resnet20_file):
  path, model, variables = resnet20_file
  out = tmp_path / 'r20.onnx'
  code = _cli('--model', 'resnet20', '--weights', path, '--image-size', '16', '--out', str(out),
              '--format', 'onnx')
  assert code == 0 and capsys.readouterr().out.startswith(f'wrote {out} (')
  session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, 16, 16, 3)))
  assert _relative(session.run(None, {'images': x})[0],
                   model.apply(variables, x, train=False)) <= 1e-5


def test_the_library_spelling_writes_the_commands_onnx(tmp_path, resnet20_file):
  """`jax_resnet.export(..., format='onnx')` is the command as a call: an ONNX file that ONNX
  Runtime runs to model.apply's logits."""
  path, model, variables = resnet20_file
  out = tmp_path / 'r20.onnx'
  line = jr.export(path, out, 16, model='resnet20', format='onnx')
  assert line == (f"wrote {out} ({out.stat().st_size} bytes; ONNX opset {onnx_export.OPSET}, "
                  "input 'images' (batch, 16, 16, 3) float32)")
  session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
  assert session.get_inputs()[0].shape == ['batch', 16, 16, 3]
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, 16, 16, 3)))
  assert _relative(session.run(None, {'images': x})[0],
                   model.apply(variables, x, train=False)) <= 1e-5


@pytest.mark.slow
def test_the_library_and_the_command_write_the_same_file(tmp_path, resnet20_file):
  path = resnet20_file[0]
  by_call, by_command = tmp_path / 'call.onnx', tmp_path / 'command.onnx'
  jr.export(path, by_call, 16, model='resnet20', format='onnx')
  assert _cli('--model', 'resnet20', '--weights', path, '--image-size', '16', '--out',
              str(by_command), '--format', 'onnx') == 0
  assert by_call.read_bytes() == by_command.read_bytes()


@pytest.mark.parametrize('extra, expected', [
    (['--dtype', 'bfloat16'], 'export: error: --dtype bfloat16 cannot be expressed in this ONNX'),
    (['--platforms', 'cpu'], 'export: error: --platforms applies to --format jax'),
    ('no extra', "export: error: ONNX export needs jax2onnx and onnx (")])
def test_cli_refusals_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch,
                                                     resnet20_file, extra, expected):
  if extra == 'no extra':
    monkeypatch.setitem(sys.modules, 'jax2onnx', None)  # import jax2onnx now raises
    extra = []
  code = _cli('--model', 'resnet20', '--weights', resnet20_file[0], '--image-size', '16',
              '--out', str(tmp_path / 'm.onnx'), '--format', 'onnx', *extra)
  err = capsys.readouterr().err
  assert (code, err.startswith(expected), err.count('\n')) == (2, True, 1), err
  assert list(tmp_path.iterdir()) == []
  if expected.endswith('onnx ('):
    assert err.rstrip().endswith("pip install 'jax-resnet-family[onnx]'.")
