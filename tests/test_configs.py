"""Every recipe in configs/ loads, builds its model and optimizer, and states its schedule; the
config boundary (jax_resnet.config): the schema, recipe loading, resolve's values and errors,
old workdirs' config.json, and the library's pieces used without any ConfigDict."""

import ast
import dataclasses
import glob
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_resnet as jr
from jax_resnet.config import boundary, resolve
from jax_resnet.data.spec import DataSpec
from jax_resnet.errors import ConfigError, TrainingError
from jax_resnet.training import changes, optim, setup, steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith('_'))


def load(name, *args):
  return jr.load_config(f'{name}.py:{args[0]}' if args else name)


def _keys(config, prefix=''):
  """Every key of a ConfigDict, sections included, as dotted paths."""
  keys = set()
  for key, value in config.items():
    keys.add(prefix + key)
    if hasattr(value, 'items'):
      keys |= _keys(value, f'{prefix}{key}.')
  return keys


def test_recipe_list():
  assert RECIPES == ['cifar10', 'cifar10_plain20', 'cifar10_plain56',
                     'cifar10_preact_resnet164', 'cifar10_resnet110', 'cifar10_resnet20',
                     'cifar10_resnet56', 'cifar10_wrn28_10', 'default', 'fake_data_benchmark',
                     'finetune', 'finetune_cifar10_resnet50', 'r50']


def _first_call(name):
  """The call get_config's first statement assigns: the config the recipe starts from."""
  with open(os.path.join(ROOT, 'configs', f'{name}.py')) as f:
    source = f.read()
  assert 'from configs' not in source and 'import configs' not in source, name
  tree = ast.parse(source)
  get_config = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == 'get_config')
  body = [s for s in get_config.body
          if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
  assert isinstance(body[0], ast.Assign) and isinstance(body[0].value, ast.Call), name
  return ast.unparse(body[0].value)


def test_each_recipe_starts_from_base_config_and_has_exactly_its_keys():
  bases = {}
  for name in RECIPES:
    call = _first_call(name)
    parent = re.fullmatch(r"load_config\('(\w+)\.py(?::\w+)?', relative_to=__file__\)", call)
    assert call == 'base_config()' or (parent and parent.group(1) in RECIPES), (name, call)
    bases[name] = parent.group(1) if parent else None
  for name in RECIPES:  # every chain of recipes ends at base_config()
    seen = [name]
    while bases[seen[-1]] is not None:
      seen.append(bases[seen[-1]])
      assert len(seen) <= len(RECIPES), seen
    assert _first_call(seen[-1]) == 'base_config()'
  assert bases['cifar10_resnet20'] == bases['cifar10_wrn28_10'] == 'cifar10'
  assert bases['fake_data_benchmark'] == 'r50'
  keys = _keys(jr.base_config())
  assert {'model', 'model_options', 'model_options.shortcut', 'model_options.scan_blocks',
          'dataset', 'parallelism'} <= keys
  assert not keys & {'shortcut', 'scan_blocks', 'freeze_batch_norm', 'drop_path_rate',
                     'dropout_rate', 'zero_init_residual'}  # moved into model_options
  for name in RECIPES:
    assert _keys(load(name)) == keys, name


def test_r50_does_not_inherit_the_digits_recipe():
  r50, digits = load('r50'), load('default')
  expected = dict(dataset='imagenet2012', image_size=224, eval_split='validation',
                  normalize='mean_std', log_every_steps=100, checkpoint_every_steps=2500,
                  model='resnet50', num_classes=1000, augment='inception')
  assert {key: r50[key] for key in expected} == expected
  assert {key: digits[key] for key in expected} == dict(
      dataset='digits', image_size=16, eval_split='test', normalize='per_pixel_mean',
      log_every_steps=20, checkpoint_every_steps=200, model='resnet20', num_classes=10,
      augment='none')
  assert jr.base_config().parallelism == r50.parallelism == digits.parallelism == 'shard_map'


def test_load_config_by_path_name_or_relative_path_leaves_sys_path_alone(monkeypatch):
  monkeypatch.chdir(ROOT)
  path_before, modules_before = list(sys.path), set(sys.modules)
  config = jr.load_config('configs/r50.py:resnet101')
  assert config.model == 'resnet101' and config.dataset == 'imagenet2012'
  assert jr.load_config('r50').model == 'resnet50'  # a bare name: the checkout's configs/
  cifar = jr.load_config('cifar10.py:resnet32',
                         relative_to=os.path.join(ROOT, 'configs', 'default.py'))
  assert (cifar.model, cifar.dataset, cifar.image_size) == ('resnet32', 'cifar10', 32)
  assert jr.load_config('cifar10').model == 'resnet20'  # get_config(model='resnet20')
  assert sys.path == path_before
  assert not {m for m in set(sys.modules) - modules_before if m.split('.')[0] == 'configs'}
  with pytest.raises(FileNotFoundError) as err:
    jr.load_config('no_such_recipe')
  assert str(err.value).startswith("config recipe 'no_such_recipe' not found (looked at ")


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_builds_model_and_optimizer(name, tmp_path):
  config = load(name)
  if config.dataset.startswith('folder:'):  # the finetune recipe: a folder of the user's
    from image_folders import make_folder
    make_folder(str(tmp_path / 'photos'), per_class=2)
    config.dataset = f'folder:{tmp_path / "photos"}'
  spec = resolve(config)
  model = setup.build_model(spec)
  shape = (1, config.image_size, config.image_size, 3)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                             train=False))['params']
  assert jr.count_params(params) == jr.count_params(jax.eval_shape(
      lambda: jr.create_model(spec.model, num_classes=spec.model_kwargs['num_classes']).init(
          jax.random.key(0), jnp.zeros(shape), train=False))['params'])
  opt_state = jax.eval_shape(optim.make_optimizer(**dataclasses.asdict(spec.optimizer)).init,
                             params)
  assert opt_state.hyperparams['learning_rate'].shape == ()
  assert model.dtype == jnp.dtype(config.dtype)


def _schedule(config, steps_per_epoch, total_steps):
  kwargs = resolve(config).schedule.schedule_kwargs(steps_per_epoch, total_steps)
  return optim.make_schedule(**kwargs)


def test_paper_cifar_schedule():
  config = load('cifar10_resnet20')
  schedule = _schedule(config, steps_per_epoch=390, total_steps=64_000)
  values = [float(schedule(s)) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
  assert values == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
  assert (config.batch_size, config.weight_decay, config.momentum) == (128, 1e-4, 0.9)
  assert resolve(config).schedule.total_steps(390) == 64_000
  assert load('cifar10_resnet110').warmup_lr == 0.01
  assert load('cifar10_resnet20').warmup_lr == 0.0


def test_r50_schedule_scales_with_batch_and_warms_up_five_epochs():
  config = load('r50')
  steps_per_epoch = 1_281_167 // config.batch_size
  total = 90 * steps_per_epoch
  assert resolve(config).schedule.total_steps(steps_per_epoch) == total
  assert resolve(config).schedule.peak_learning_rate == pytest.approx(0.4)
  schedule = _schedule(config, steps_per_epoch, total)
  warmup = 5 * steps_per_epoch
  assert float(schedule(0)) == 0.0
  assert float(schedule(warmup)) == pytest.approx(0.4)  # 0.1 x 1024 / 256
  assert float(schedule(warmup + (total - warmup) // 2)) == pytest.approx(0.2, rel=1e-3)
  assert float(schedule(total)) == pytest.approx(0.0, abs=1e-6)
  assert load('r50', 'resnet101').model == 'resnet101'
  assert (config.label_smoothing, config.nesterov, config.dtype) == (0.1, True, 'bfloat16')


def test_wrn_schedule_uses_epoch_fractions():
  config = load('cifar10_wrn28_10')
  assert resolve(config).schedule.schedule_kwargs(390, 78_000)['boundaries'] == (
      23_400, 46_800, 62_400)
  schedule = _schedule(config, steps_per_epoch=390, total_steps=78_000)
  assert [float(schedule(s)) for s in (0, 23_400, 46_800, 62_400)] == pytest.approx(
      [0.1, 0.02, 0.004, 0.0008])


def test_training_pieces_take_plain_values_without_any_config_dict():
  """A tiny resnet20 at 8x8, batch 4, three SGD steps on one batch: the library's optimizer,
  schedule, state and step from keyword values alone."""
  model = jr.create_model('resnet20', stage_sizes=(1, 1, 1), num_classes=10)
  tx = optim.make_optimizer('sgd', momentum=0.9, weight_decay=0.0)
  schedule = optim.make_schedule('step', 0.1, total_steps=3, boundaries=(2,), decay_factor=0.5)
  state = jax.jit(lambda key: steps.create_train_state(model, tx, key, (8, 8, 3)))(
      jax.random.key(0))
  assert state.ema_params is None and not bool(state.warming_up) and int(state.step) == 0
  train_step = jax.jit(steps.make_train_step(model, tx, schedule))
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32),
           'label': jnp.asarray([1, 3, 5, 7], jnp.int32)}

  def loss_of(state):  # the batch's mean cross-entropy, computed here with optax
    logits, _ = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                            batch['image'], train=True, mutable=['batch_stats'])
    return float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                          batch['label'])))

  losses, rates, expected = [], [], []
  for _ in range(3):
    expected.append(loss_of(state))
    state, metrics = train_step(state, batch, jax.random.key(1))
    losses.append(float(metrics['loss']))
    rates.append(float(metrics['learning_rate']))
  np.testing.assert_allclose(losses, expected, rtol=1e-5)
  assert rates == pytest.approx([0.1, 0.1, 0.05])
  assert losses[0] > losses[1] > losses[2] > loss_of(state)
  assert int(state.step) == 3 and float(metrics['grads_finite']) == 1.0


# A digits workdir's config.json as the trainer wrote it before model_options existed (the
# architecture options at the top level), with shortcut, scan_blocks and zero_init_residual set.
OLD_CONFIG_JSON = {
    'augment': 'none', 'batch_size': 128, 'checkpoint_every_steps': 200, 'conv1x1': 'auto',
    'crop_padding': 4, 'data_dir': '', 'dataset': 'digits', 'decay_bn_and_bias': True,
    'device_data': False, 'drop_path_rate': 0.0, 'dropout_rate': 0.0, 'dtype': 'float32',
    'ema_decay': 0.0, 'eval_batch_size': 512, 'eval_every_steps': 0, 'eval_max_batches': 0,
    'eval_split': 'test', 'freeze_batch_norm': False, 'holdout_size': 0, 'image_size': 16,
    'init_from': '', 'init_reinit_head': False, 'keep_checkpoints': 3, 'label_smoothing': 0.0,
    'learning_rate': 0.1, 'log_every_steps': 20, 'lr_batch_base': 0,
    'lr_boundaries': [0.5, 0.75], 'lr_decay_factor': 0.1, 'lr_schedule': 'cosine',
    'model': 'resnet20', 'momentum': 0.9, 'nesterov': False, 'normalize': 'per_pixel_mean',
    'num_classes': 10, 'num_epochs': 30.0, 'num_train_steps': -1, 'num_workers': 0,
    'optimizer': 'sgd', 'parallelism': 'pmap', 'prefetch_batches': 2, 'progress_bar': True,
    'scan_blocks': True, 'seed': 0, 'shortcut': 'B', 'skip_nonfinite_updates': False,
    'stem_conv': 'auto', 'steps_per_dispatch': 1, 'sync_batch_norm': True,
    'train_split': 'train', 'warmup_epochs': 1.0, 'warmup_lr': 0.0, 'warmup_until_error': 0.8,
    'weight_decay': 0.0001, 'weight_decay_mode': 'l2', 'zero_init_residual': False,
}


def test_from_json_moves_an_old_flat_config_into_model_options():
  config = boundary.from_json(json.dumps(OLD_CONFIG_JSON))
  assert _keys(config) == _keys(jr.base_config())
  options = config.model_options
  # Falsy old values are the model's defaults: left unset, as the old trainer did not pass
  # the ones a model lacks (a video model has no dropout_rate or scan_blocks).
  assert (options.shortcut, options.scan_blocks, options.zero_init_residual) == ('B', True,
                                                                                 None)
  assert (options.dropout_rate, options.drop_path_rate, options.freeze_batch_norm) == (None,) * 3
  for key, value in OLD_CONFIG_JSON.items():
    if key not in boundary.MOVED_TO_MODEL_OPTIONS:
      assert config[key] == (tuple(value) if isinstance(value, list) else value), key
  assert config.parallelism == 'pmap'  # the run's own value, not today's default
  spec = resolve(config)
  assert (spec.model_kwargs['shortcut'], spec.model_kwargs['scan_blocks']) == ('B', True)
  model = setup.build_model(spec)
  assert (model.shortcut, model.scan_blocks, model.zero_init_residual) == ('B', True, False)
  assert spec.identity == {'model': 'resnet20', 'num_classes': 10, 'dataset': 'digits',
                           'image_size': 16, 'optimizer': 'sgd', 'ema_decay': 0.0}
  # A config.json written today reads back as the same config (the dict form too).
  again = boundary.from_json(spec.config_json)
  assert again.to_dict() == config.to_dict()
  assert boundary.from_json(json.loads(spec.config_json)).to_dict() == config.to_dict()


def test_the_data_keys_take_the_data_specs_defaults():
  """One set of defaults: base_config's input-pipeline keys are DataSpec's, and the base
  config resolves to the default DataSpec."""
  base, defaults = jr.base_config(), DataSpec()
  shared = [f.name for f in dataclasses.fields(DataSpec) if f.name in base]
  # Set by the boundary from a weight tag (statistics, eval crop) and by the trainer (split.json).
  assert sorted(set(f.name for f in dataclasses.fields(DataSpec)) - set(shared)) == [
      'eval_crop_fraction', 'eval_interpolation', 'mean', 'split_record', 'std']
  assert {k: base[k] for k in shared} == {k: getattr(defaults, k) for k in shared}
  # num_classes 0 is the dataset's count, filled in: imagenet2012's 1000
  assert resolve(base).data == dataclasses.replace(defaults, num_classes=1000)


def test_resolve_hands_the_trainer_plain_values_for_restores():
  """What a resume compares and blames travels in the RunSpec: every setting flat, and per
  part of the train state the settings that shape it."""
  config = load('default')
  spec = resolve(config)
  assert spec.settings == changes.flat_settings(json.loads(config.to_json()))
  assert spec.settings['model_options.shortcut'] is None
  assert spec.settings['lr_boundaries'] == list(config.lr_boundaries)  # as JSON holds it
  assert spec.state_shaping == boundary.STATE_SHAPING_KEYS
  assert spec.identity == {k: config[k] for k in boundary.IDENTITY_KEYS}


def test_from_json_reads_an_old_video_config():
  old = dict(OLD_CONFIG_JSON, model='r3d_18', num_classes=400, shortcut='', scan_blocks=False,
             image_size=112)
  spec = resolve(boundary.from_json(old))
  model = setup.build_model(spec)
  assert type(model).__name__ == 'VideoResNet'
  assert {'dropout_rate', 'scan_blocks', 'shortcut'}.isdisjoint(spec.model_kwargs)


@pytest.mark.parametrize('overrides, message', [
    (dict(optimizer='adam'), "optimizer must be one of 'sgd', 'adamw', 'lars', got 'adam'."),
    (dict(parallelism='pjit'), "parallelism must be one of 'shard_map', 'pmap', got 'pjit'."),
    (dict(model='resnet50', image_size=16),
     'image_size=16 is too small for resnet50: its stem and stages downsample by 32; use '
     'image_size >= 32.'),
    (dict(lr_schedule='linear'),
     "lr_schedule must be one of 'constant', 'step', 'cosine', got 'linear'."),
    (dict(num_classes=-1),
     "num_classes must be a positive integer (or 0: the dataset's count), got -1."),
    (dict(weight_decay_mode='l1'),
     "weight_decay_mode must be one of 'l2', 'decoupled', got 'l1'."),
    (dict(device_data=True, augment='inception'),
     "device_data supports augment 'none' or 'pad_crop_flip', not 'inception'; use the host "
     'pipeline (device_data=False) for ImageNet-style augmentation.'),
    (dict(augment='pad_crop_flip', crop_padding=16),
     'crop_padding=16 must be smaller than image_size=16 (the CIFAR recipe pads 4 pixels).'),
])
def test_resolve_errors_are_one_line(overrides, message):
  config = load('default')
  config.update(overrides)
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == f'Invalid config: {message}'


def test_the_trainers_names_are_checked_by_the_trainer():
  """The checks the boundary asks live with their consumers, which raise their own error."""
  with pytest.raises(TrainingError) as err:
    optim.make_schedule('linear', 0.1, 10)
  assert str(err.value) == ("schedule kind must be one of 'constant', 'step', 'cosine', got "
                            "'linear'.")
  assert err.value.choices == optim.SCHEDULES
  with pytest.raises(TrainingError) as err:
    optim.make_optimizer('adam')
  assert str(err.value) == "optimizer must be one of 'sgd', 'adamw', 'lars', got 'adam'."
