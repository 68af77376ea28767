"""float16 training with dynamic loss scaling (training.loss_scale): gradients that underflow
without it train with it, a non-finite gradient skips the step and halves the scale, finite
runs double it, and the trainer checkpoints the scale so a resumed run continues exactly."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.config import train_and_evaluate
from jax_resnet.training import loss_scale, make_optimizer, make_schedule, steps

X = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
BATCH = {'image': X, 'label': jnp.arange(8) % 10}
LR = 1e4  # large: the branch gradients (~1e-7) must move float32 weights visibly
# Each residual branch enters as 1e-6 * F(x): its cotangent, 1e-6 times the block output's,
# falls below float16's smallest subnormal (6e-8) unless the loss is scaled up.
TINY = dict(stage_sizes=(1, 1, 1), num_classes=10, residual_scale=1e-6)


def _one_step(dtype, scale):
  model = jr.create_model('resnet20', dtype=dtype, **TINY)
  tx = make_optimizer('sgd', momentum=0.0, weight_decay=0.0)
  schedule = make_schedule('constant', peak_learning_rate=LR, total_steps=10)
  state = jax.jit(lambda r: steps.create_train_state(model, tx, r, (16, 16, 3),
                                                     loss_scale=scale))(jax.random.key(0))
  new, metrics = jax.jit(steps.make_train_step(model, tx, schedule))(state, BATCH,
                                                                      jax.random.key(2))
  return state, new, metrics


def _branch_gradient(before, after):
  """-(change)/lr of a residual branch's convolution kernel: its gradient under plain SGD."""
  path = lambda s: s.params['stage2_block1']['conv1']['kernel']
  return -(np.asarray(path(after), np.float64) - np.asarray(path(before), np.float64)) / LR


@pytest.mark.slow  # the overflow/halving test below keeps loss scaling in the default run
def test_float16_gradients_underflow_without_scaling_and_train_with_it():
  before, unscaled, _ = _one_step('float16', None)
  assert not np.any(_branch_gradient(before, unscaled))  # every entry underflowed to 0
  _, scaled, metrics = _one_step('float16', loss_scale.initial())
  _, reference, _ = _one_step('float32', None)
  got, want = _branch_gradient(before, scaled), _branch_gradient(before, reference)
  assert np.max(np.abs(want)) > 0
  # The same direction and size as float32's, within float16 compute's error (measured:
  # cosine 0.99, norms 1% apart).
  cosine = np.sum(got * want) / np.linalg.norm(got) / np.linalg.norm(want)
  assert cosine > 0.97
  assert abs(np.linalg.norm(got) / np.linalg.norm(want) - 1) < 0.05
  assert float(metrics['grads_finite']) == 1.0
  assert float(metrics['loss_scale']) == loss_scale.INITIAL_SCALE


def test_overflow_skips_and_halves_finite_runs_double_and_counts_are_exact():
  model = jr.create_model('resnet20', dtype='float16', **TINY)
  tx = make_optimizer('sgd', momentum=0.0, weight_decay=0.0)
  step = jax.jit(steps.make_train_step(model, tx, make_schedule('constant', 0.1, 100)))
  growth = 2
  state = jax.jit(lambda r: steps.create_train_state(
      model, tx, r, (16, 16, 3), loss_scale=loss_scale.initial(growth, scale=2.0 ** 22)))(
          jax.random.key(0))
  scale, fin_steps, skipped, finite = 2.0 ** 22, 0, 0, []
  for _ in range(12):
    params = state.params
    state, metrics = step(state, BATCH, jax.random.key(2))
    ok = bool(metrics['grads_finite'])
    finite.append(ok)
    moved = any(np.any(a != b) for a, b in zip(jax.tree.leaves(params),
                                               jax.tree.leaves(state.params)))
    assert moved == ok  # a skipped step leaves the weights as they were
    # The rule, replayed: halve and restart on a skip; double after `growth` finite steps.
    if not ok:
      scale, fin_steps, skipped = scale / 2, 0, skipped + 1
    elif fin_steps == growth:
      scale, fin_steps = scale * 2, 0
    else:
      fin_steps += 1
    assert float(state.loss_scale.dynamic.scale) == scale == float(metrics['loss_scale'])
    assert int(state.loss_scale.dynamic.fin_steps) == fin_steps
    assert int(state.loss_scale.skipped) == skipped
  assert finite[0] is False and True in finite  # it overflowed, then found a scale
  assert int(state.step) == 12


def _config(**overrides):
  config = jr.load_config('default')
  config.update(dict(dtype='float16', image_size=16, batch_size=64, eval_batch_size=360,
                     lr_schedule='constant', learning_rate=0.05, warmup_epochs=0.0,
                     log_every_steps=2, eval_every_steps=1000, checkpoint_every_steps=3,
                     progress_bar=False), **overrides)
  config.model_options.stage_sizes = (1, 1, 1)
  return config


@pytest.mark.slow  # 25 s: three trainer runs
def test_the_trainer_checkpoints_the_scale_and_a_resumed_run_continues_it(tmp_path,
                                                                          monkeypatch):
  monkeypatch.setattr(loss_scale, 'INITIAL_SCALE', 2.0 ** 20)  # the first steps overflow
  reference = train_and_evaluate(_config(num_train_steps=6), str(tmp_path / 'reference'))
  train_and_evaluate(_config(num_train_steps=3), str(tmp_path / 'resumed'))
  resumed = train_and_evaluate(_config(num_train_steps=6), str(tmp_path / 'resumed'))
  assert reference['loss_scale_skipped_steps'] >= 1
  for key in ('loss_scale', 'loss_scale_finite_steps', 'loss_scale_skipped_steps',
              'final_eval_loss'):
    assert resumed[key] == reference[key], key
  with open(tmp_path / 'reference' / 'metrics.jsonl') as f:
    rows = [row for row in map(json.loads, f) if row['split'] == 'train']
  assert [row['loss_scale'] for row in rows][-1] == reference['loss_scale']
  assert sum(row['skipped_updates'] for row in rows) == reference['loss_scale_skipped_steps']
  assert os.path.isdir(tmp_path / 'resumed' / 'checkpoints' / '3')
  assert reference['loss_scale'] <= 2.0 ** 19


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_no_loss_scale_outside_float16(dtype):
  assert loss_scale.for_dtype(dtype) is None
  assert float(loss_scale.for_dtype('float16').dynamic.scale) == loss_scale.INITIAL_SCALE
