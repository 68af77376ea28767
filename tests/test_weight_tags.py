"""Weight tags: the table agrees with torchvision's Weights and timm's pretrained configs, and
predict uses a tag's preprocessing (given, or recorded in the file)."""

import math

import numpy as np
import pytest
from PIL import Image

import jax_resnet
from jax_resnet import predict, weights
from test_weights import random_variables


def test_every_tag_names_a_registered_model_and_a_sane_transform():
  assert len(weights.TAGS) == 49
  for name, tag in weights.TAGS.items():
    assert name == tag.name and name.split('.')[1]
    assert tag.model in jax_resnet.list_models(), name
    assert tag.resize >= tag.crop and tag.interpolation in ('bilinear', 'bicubic')
    assert 60.0 < tag.top1 < 90.0 and tag.source in ('torchvision', 'timm', 'big_vision')
    assert (tag.size_mb is not None) == (tag.source == 'torchvision'), name
  assert weights.list_tags('resnet50d') == ['resnet50d.a1_in1k', 'resnet50d.ra2_in1k']


def test_unknown_tag_suggests_close_ones():
  with pytest.raises(ValueError) as err:
    weights.get_tag('resnet50.tv3_in1k')
  assert str(err.value) == ("Unknown weight tag 'resnet50.tv3_in1k'. Did you mean "
                            'resnet50.tv_in1k, resnet50.tv2_in1k, resnet152.tv_in1k? '
                            'jax_resnet.weights.list_tags() lists all 49.')


def test_torchvision_tags_equal_torchvision_weights_meta():
  models = pytest.importorskip('torchvision.models')
  for tag in (t for t in weights.TAGS.values() if t.source == 'torchvision'):
    version = {'tv_in1k': 'IMAGENET1K_V1', 'tv2_in1k': 'IMAGENET1K_V2',
               'tv_kinetics400': 'KINETICS400_V1'}[tag.name.split('.')[1]]
    published = models.get_weight(f'{models.get_model_weights(tag.model).__name__}.{version}')
    transform = published.transforms()
    assert (tag.resize, tag.crop) == (transform.resize_size[0], transform.crop_size[0]), tag.name
    assert tag.interpolation == transform.interpolation.value
    assert (list(tag.mean), list(tag.std)) == (transform.mean, transform.std)
    metric = 'Kinetics-400' if tag.dataset == 'Kinetics-400' else 'ImageNet-1K'
    assert tag.top1 == published.meta['_metrics'][metric]['acc@1']
    assert tag.size_mb == published.meta['_file_size']
    assert tag.fetch == published.url


def test_timm_tags_equal_timm_pretrained_configs():
  timm_models = pytest.importorskip('timm.models')
  for tag in (t for t in weights.TAGS.values() if t.source == 'timm'):
    cfg = timm_models.get_pretrained_cfg(tag.name).to_dict()
    size = (cfg.get('test_input_size') or cfg['input_size'])[-1]
    crop_pct = cfg.get('test_crop_pct') or cfg['crop_pct']
    # The published result is at the test size, or the train size for a1h/BiT rows.
    candidates = {(size, math.floor(size / crop_pct)),
                  (cfg['input_size'][-1], math.floor(cfg['input_size'][-1] / cfg['crop_pct']))}
    assert (tag.crop, tag.resize) in candidates or tag.resize == tag.crop, tag.name
    assert tag.interpolation == cfg['interpolation'], tag.name
    assert (tag.mean, tag.std) == (tuple(cfg['mean']), tuple(cfg['std'])), tag.name
    assert tag.num_classes == cfg['num_classes'] and tag.fetch == f'hf-hub:{cfg["hf_hub_id"]}'


def _image(tmp_path):
  path = str(tmp_path / 'img.png')
  rng = np.random.RandomState(0)
  Image.fromarray(rng.randint(0, 255, (300, 400, 3), np.uint8)).save(path)
  return path


@pytest.mark.slow  # test_pretrained's predict with a tag runs by default
def test_predict_uses_the_tag_recorded_in_the_file(tmp_path, capsys):
  image = _image(tmp_path)
  variables = random_variables('resnet18', seed=8)
  tagged = weights.save_npz(tmp_path / 'tagged.npz', variables, tag='resnet18.a1_in1k')
  plain = weights.save_npz(tmp_path / 'plain.npz', variables)
  assert weights.read_tag(tagged) == 'resnet18.a1_in1k' and weights.read_tag(plain) is None
  assert predict.main(['--model', 'resnet18', '--weights', tagged, image]) == 0
  from_file = capsys.readouterr().out
  assert predict.main(['--model', 'resnet18', '--weights', plain, '--tag', 'resnet18.a1_in1k',
                       image]) == 0
  assert capsys.readouterr().out.replace(plain, tagged) == from_file
  # The tag's transform: timm's a1 recipe evaluates at 288, crop_pct 1.0, bicubic; without a
  # tag, torchvision V1's 256/224 bilinear.
  parse = lambda path: predict._parser().parse_args(['--weights', path, '--model', 'resnet18',
                                                    image])
  assert predict._transform(parse(tagged), weights) == dict(
      resize=288, crop=288, interpolation='bicubic', mean=weights.tags.IMAGENET_MEAN,
      std=weights.tags.IMAGENET_STD)
  assert predict._transform(parse(plain), weights) == dict(resize=256, crop=224)
  np.testing.assert_array_equal(predict.read_image(image, **predict._transform(parse(tagged),
                                                                               weights)),
                                predict.preprocess(Image.open(image), 288, 288, 'bicubic'))


def test_a_tag_of_another_model_is_one_line(tmp_path, capsys):
  image = _image(tmp_path)
  assert predict.main(['--model', 'resnet18', '--weights', 'w.npz', '--tag',
                       'resnet50.tv2_in1k', image]) == 2
  assert capsys.readouterr().err == (
      'predict: error: weight tag resnet50.tv2_in1k is for resnet50, not resnet18; pass '
      '--model resnet50 or another --tag.\n')


def test_fine_tuning_uses_the_tags_normalisation():
  from jax_resnet.config import resolve
  from jax_resnet.errors import ConfigError
  config = jax_resnet.load_config('finetune_cifar10_resnet50')
  assert resolve(config).data.mean == (0.485, 0.456, 0.406)
  config.model, config.init_tag = 'preact_resnet50', 'resnetv2_50.a1h_in1k'
  data = resolve(config).data
  assert (data.mean, data.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
  config.model = 'resnet50'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == (
      "Invalid config: init_tag='resnetv2_50.a1h_in1k' is a preact_resnet50 checkpoint but "
      "model='resnet50'; use a tag of resnet50 (jax_resnet.weights.list_tags('resnet50')).")


def test_the_pipeline_normalises_with_the_specs_statistics():
  from jax_resnet import data
  spec = data.spec.DataSpec(dataset='synthetic', image_size=8, num_classes=3, batch_size=4,
                            eval_batch_size=4, normalize='mean_std', mean=(0.5, 0.5, 0.5),
                            std=(0.5, 0.5, 0.5))
  plain = data.spec.DataSpec(dataset='synthetic', image_size=8, num_classes=3, batch_size=4,
                             eval_batch_size=4, normalize='none')
  normalised = next(iter(data.eval_batches(spec)))['image']
  raw = next(iter(data.eval_batches(plain)))['image']
  np.testing.assert_allclose(normalised, (raw - 0.5) / 0.5, rtol=1e-6, atol=1e-6)
