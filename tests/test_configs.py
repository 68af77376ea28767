"""Every recipe in configs/ loads, builds its model and optimizer, and states its schedule."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from configs import default
from jax_resnet.training import optim, setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith('_'))


def load(name, *args):
  return importlib.import_module(f'configs.{name}').get_config(*args)


def test_recipe_list():
  assert RECIPES == ['cifar10_plain20', 'cifar10_plain56', 'cifar10_preact_resnet164',
                     'cifar10_resnet110', 'cifar10_resnet20', 'cifar10_resnet56',
                     'cifar10_wrn28_10', 'default', 'fake_data_benchmark',
                     'finetune_cifar10_resnet50', 'r50']


def test_recipes_only_use_keys_of_the_default_config():
  keys = set(default.get_config().keys())
  for name in RECIPES:
    assert set(load(name).keys()) == keys, name


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_builds_model_and_optimizer(name):
  config = load(name)
  model = setup.build_model(config)
  shape = (1, config.image_size, config.image_size, 3)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                             train=False))['params']
  assert jr.count_params(params) == jr.count_params(jax.eval_shape(
      lambda: jr.create_model(config.model, num_classes=config.num_classes).init(
          jax.random.key(0), jnp.zeros(shape), train=False))['params'])
  opt_state = jax.eval_shape(optim.make_optimizer(config).init, params)
  assert opt_state.hyperparams['learning_rate'].shape == ()
  assert model.dtype == jnp.dtype(config.dtype)


def test_paper_cifar_schedule():
  config = load('cifar10_resnet20')
  schedule = optim.make_schedule(config, steps_per_epoch=390, total_steps=64_000)
  values = [float(schedule(s)) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
  assert values == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
  assert (config.batch_size, config.weight_decay, config.momentum) == (128, 1e-4, 0.9)
  assert load('cifar10_resnet110').warmup_lr == 0.01
  assert load('cifar10_resnet20').warmup_lr == 0.0


def test_r50_schedule_scales_with_batch_and_warms_up_five_epochs():
  config = load('r50')
  steps_per_epoch = 1_281_167 // config.batch_size
  total = 90 * steps_per_epoch
  schedule = optim.make_schedule(config, steps_per_epoch, total)
  warmup = 5 * steps_per_epoch
  assert float(schedule(0)) == 0.0
  assert float(schedule(warmup)) == pytest.approx(0.4)  # 0.1 x 1024 / 256
  assert float(schedule(warmup + (total - warmup) // 2)) == pytest.approx(0.2, rel=1e-3)
  assert float(schedule(total)) == pytest.approx(0.0, abs=1e-6)
  assert load('r50', 'resnet101').model == 'resnet101'
  assert (config.label_smoothing, config.nesterov, config.dtype) == (0.1, True, 'bfloat16')


def test_wrn_schedule_uses_epoch_fractions():
  config = load('cifar10_wrn28_10')
  schedule = optim.make_schedule(config, steps_per_epoch=390, total_steps=78_000)
  assert [float(schedule(s)) for s in (0, 23_400, 46_800, 62_400)] == pytest.approx(
      [0.1, 0.02, 0.004, 0.0008])
