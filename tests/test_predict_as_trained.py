"""A trainer workdir records what its eval pipeline does to an image (eval_preprocessing.json,
mean_image.npy), and its readers apply it: a run's own eval images through `predict --weights
WORKDIR` are right exactly as often as the run's eval said, for each normalize mode; export's
JSON and its baked preprocessing say and do the same."""

import json
import os
import re
import shutil

import jax
import jax.export  # noqa: F401  (jax 0.7 does not import the submodule itself)
import numpy as np
import pytest
from PIL import Image

import jax_resnet as jr
from jax_resnet import export, predict
from jax_resnet.config import load_config, resolve, train_and_evaluate
from jax_resnet.data import eval_record
from jax_resnet.data.sources import digits_sources

IMAGE_SIZE = 16  # the default recipe's


def _train(workdir, normalize):
  """The default digits recipe (resnet20), briefly."""
  config = load_config('default')
  config.normalize = normalize
  config.batch_size = 64
  config.num_train_steps = 40
  config.eval_every_steps = 1000
  config.log_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.progress_bar = False
  return train_and_evaluate(config, str(workdir))


@pytest.fixture(scope='module')
def eval_images(tmp_path_factory):
  """The digits eval split as files predict reads to the pipeline's own pixels: 'F' TIFFs
  (float brightness in [0, 1], the digits' k/16 levels exactly), names in eval order."""
  folder = tmp_path_factory.mktemp('digits_eval')
  source = digits_sources(('train', 'test'), IMAGE_SIZE).eval
  labels = []
  for index in range(len(source)):
    example = source[index]
    Image.fromarray(example['image'][..., 0], mode='F').save(folder / f'{index:03d}.tiff')
    labels.append(example['label'])
  return folder, np.asarray(labels)


def _run(tmp_path_factory, normalize):
  workdir = tmp_path_factory.mktemp(f'run_{normalize}')
  summary = _train(workdir, normalize)
  return workdir, summary


@pytest.fixture(scope='module')
def per_pixel_run(tmp_path_factory):
  return _run(tmp_path_factory, 'per_pixel_mean')


def _top1(out: str) -> dict:
  """{path: top-1 class} from predict's output."""
  lines = out.splitlines()
  return {lines[i - 1]: int(re.search(r'\((\d+)\)$', lines[i]).group(1))
          for i in range(1, len(lines)) if lines[i - 1] and not lines[i - 1].startswith(' ')}


def _predicted_correct(capsys, workdir, eval_images) -> int:
  folder, labels = eval_images
  capsys.readouterr()
  assert predict.main(['--weights', str(workdir), '--batch-size', '128', '--top', '1',
                       str(folder)]) == 0
  top1 = _top1(capsys.readouterr().out)
  assert len(top1) == len(labels)
  return sum(top1[str(folder / f'{i:03d}.tiff')] == label for i, label in enumerate(labels))


def _eval_correct(summary) -> int:
  return round(summary['final_eval_top1'] * summary['eval_examples'])


@pytest.mark.slow
def test_a_runs_eval_images_through_predict_score_as_its_eval(per_pixel_run, eval_images,
                                                             capsys):
  workdir, summary = per_pixel_run
  record = json.loads((workdir / eval_record.RECORD_FILE).read_text())
  assert record['normalize'] == 'per_pixel_mean' and record['image_size'] == IMAGE_SIZE
  assert np.load(workdir / eval_record.MEAN_IMAGE_FILE).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
  assert summary['eval_examples'] == 360 and _eval_correct(summary) > 36  # above chance
  assert _predicted_correct(capsys, workdir, eval_images) == _eval_correct(summary)


def test_a_workdir_without_the_record_rebuilds_it_from_config_json(per_pixel_run, tmp_path):
  workdir, _ = per_pixel_run
  old = tmp_path / 'old'
  shutil.copytree(workdir, old)
  os.remove(old / eval_record.RECORD_FILE)
  os.remove(old / eval_record.MEAN_IMAGE_FILE)
  rebuilt = jr.config.eval_preprocessing(str(old))
  assert eval_record.same(rebuilt, eval_record.read(str(workdir)))


def test_a_record_that_cannot_be_applied_is_one_line(per_pixel_run, tmp_path, capsys,
                                                     eval_images):
  workdir, _ = per_pixel_run
  image = str(eval_images[0] / '000.tiff')
  damaged = tmp_path / 'damaged'
  shutil.copytree(workdir, damaged)
  mean = np.load(damaged / eval_record.MEAN_IMAGE_FILE)
  mean[3, 4, 0] += 0.25
  np.save(damaged / eval_record.MEAN_IMAGE_FILE, mean)
  assert predict.main(['--weights', str(damaged), image]) == 2
  assert capsys.readouterr().err == (
      f'predict: error: {damaged / eval_record.MEAN_IMAGE_FILE} does not match the SHA-256 in '
      f'{eval_record.RECORD_FILE} (changed or damaged since the run wrote it): restore it '
      'from a copy of the workdir.\n')
  old = tmp_path / 'old'
  shutil.copytree(workdir, old)
  os.remove(old / eval_record.RECORD_FILE)
  config = json.loads((old / 'config.json').read_text())
  (old / 'config.json').write_text(json.dumps({**config, 'dataset': 'no_such_dataset_xyz'}))
  assert predict.main(['--weights', str(old), image]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'predict: error: {old} has no {eval_record.RECORD_FILE} (a run of an '
                        'older version) and rebuilding it from its config.json failed (')
  assert err.endswith('rerun the training there with this version to record it.\n')
  assert err.count('\n') == 1
  assert predict.main(['--weights', str(workdir), '--resize', '20', image]) == 2
  assert capsys.readouterr().err == (
      f'predict: error: {workdir} is a training workdir: its images are fed as its run '
      'evaluated them (eval_preprocessing.json); leave out --tag and --resize.\n')


def test_the_analysis_tools_refuse_a_record_their_data_does_not_give(per_pixel_run,
                                                                     tmp_path):
  from jax_resnet.analysis import common
  from jax_resnet.errors import DataError
  workdir, _ = per_pixel_run
  common.check_eval_record(str(workdir), _data_spec(workdir))  # the run's own: accepted
  changed = tmp_path / 'changed'
  shutil.copytree(workdir, changed)
  record = json.loads((changed / eval_record.RECORD_FILE).read_text())
  record.update(normalize='none', mean_image=None, mean_image_sha256=None)
  (changed / eval_record.RECORD_FILE).write_text(json.dumps(record))
  with pytest.raises(DataError) as caught:
    common.workdir_subject(str(changed))
  assert str(caught.value) == (
      f'{changed}/{eval_record.RECORD_FILE} records another eval transform than its '
      "config.json's data gives today (changed dataset or per-pixel mean?), so the analysis "
      'would not see the inputs the run saw; restore the data or the record.')


def _data_spec(workdir):
  from jax_resnet.config import from_json
  return resolve(from_json((workdir / 'config.json').read_text())).data


def test_an_init_tags_statistics_are_recorded():
  config = load_config('default')
  config.model = 'preact_resnet50'
  config.normalize = 'mean_std'
  config.init_tag = 'resnetv2_50.a1h_in1k'
  config.image_size = 32
  record = eval_record.of_spec(resolve(config).data)
  assert (record.normalize, record.mean, record.std) == ('mean_std', (0.5,) * 3, (0.5,) * 3)
  image = np.full((32, 32, 3), 0.75, np.float32)
  np.testing.assert_array_equal(record(image), np.full_like(image, 0.5))


def test_exports_json_and_baked_preprocessing_are_the_runs(per_pixel_run, eval_images,
                                                           tmp_path, capsys):
  workdir, summary = per_pixel_run
  mean_image = np.load(workdir / eval_record.MEAN_IMAGE_FILE)
  out = str(tmp_path / 'digits.jaxexport')
  assert export.main(['--weights', str(workdir), '--image-size', str(IMAGE_SIZE),
                      '--out', out]) == 0
  program, meta = export.load_exported(out)
  assert meta['normalize'] == 'per_pixel_mean' and meta['std'] == [1.0, 1.0, 1.0]
  np.testing.assert_array_equal(np.float32(meta['mean']), mean_image)
  folder, labels = eval_images
  pixels = np.stack([np.repeat(np.asarray(Image.open(folder / f'{i:03d}.tiff'))[..., None], 3,
                               axis=-1) for i in range(len(labels))])
  served = (pixels - np.float32(meta['mean'])) / np.float32(meta['std'])  # docs/export.md's
  correct = int(np.sum(np.argmax(np.asarray(program.call(served)), -1) == labels))
  assert correct == _eval_correct(summary)
  baked = str(tmp_path / 'baked.jaxexport')
  assert export.main(['--weights', str(workdir), '--image-size', str(IMAGE_SIZE),
                      '--with-preprocessing', '--out', baked]) == 0
  program, meta = export.load_exported(baked)
  assert meta['preprocessing']['normalize'] == 'per_pixel_mean'
  uint8 = np.round(pixels[:32] * 255).astype(np.uint8)
  record = jr.config.eval_preprocessing(str(workdir))
  model, variables = _model_and_variables(workdir)
  expected = model.apply(variables, np.stack([record(image) for image in uint8]), train=False)
  got = np.asarray(program.call(uint8))
  assert float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))) < 1e-5


def _model_and_variables(workdir):
  from jax_resnet import weights
  variables = weights.load('resnet20', str(workdir))
  model = jr.create_model('resnet20', num_classes=10)
  return model, jax.tree.map(np.asarray, variables)


@pytest.mark.slow
@pytest.mark.parametrize('normalize', ['mean_std', 'none'])
def test_each_normalize_mode_predicts_as_evaluated(tmp_path_factory, eval_images, capsys,
                                                   normalize):
  workdir, summary = _run(tmp_path_factory, normalize)
  record = json.loads((workdir / eval_record.RECORD_FILE).read_text())
  assert record['normalize'] == normalize
  assert not (workdir / eval_record.MEAN_IMAGE_FILE).exists()
  assert _predicted_correct(capsys, workdir, eval_images) == _eval_correct(summary)
