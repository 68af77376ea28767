"""The pure train step's optimisation rules, each checked against an independent computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_resnet as jr
from jax_resnet.training import optim, steps

IMAGE = (8, 8, 3)
# configs/default.py's optimisation, with a constant rate of 0.1 and no momentum.
OPTIMIZER = dict(name='sgd', momentum=0.0, nesterov=False, weight_decay=1e-4,
                 weight_decay_mode='l2', decay_bn_and_bias=True)
STEP = dict(label_smoothing=0.0, ema_decay=0.0, warmup_lr=0.0, warmup_until_error=0.8)


def _setup(dtype='float32', **overrides):
  """The library's pieces from plain values: overrides of make_optimizer's (OPTIMIZER) and
  make_train_step's (STEP) keywords."""
  unknown = set(overrides) - set(OPTIMIZER) - set(STEP)
  assert not unknown, unknown
  settings = {**OPTIMIZER, **STEP, **overrides}
  model = jr.create_model('resnet20', stage_sizes=(1, 1, 1), dtype=dtype, param_dtype=dtype)
  tx = optim.make_optimizer(**{k: settings[k] for k in OPTIMIZER})
  schedule = optim.make_schedule('constant', 0.1, total_steps=100)
  state = steps.create_train_state(model, tx, jax.random.key(0), IMAGE,
                                   ema=settings['ema_decay'] > 0,
                                   warming_up=settings['warmup_lr'] > 0)
  step = jax.jit(steps.make_train_step(model, tx, schedule, **{k: settings[k] for k in STEP}))
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.normal(size=(8,) + IMAGE), dtype),
           'label': jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  return settings, model, state, step, batch


def _data_gradient(settings, model, state, batch):
  def loss(params):
    logits, _ = model.apply({'params': params, 'batch_stats': state.batch_stats},
                            batch['image'], train=True, mutable=['batch_stats'])
    return jnp.mean(steps.cross_entropy(logits, batch['label'], settings['label_smoothing']))
  return jax.jit(jax.grad(loss))(state.params)  # one program, not op-by-op dispatch


def _assert_tree_close(a, b, rtol=1e-5, atol=1e-7):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize('decay_bn_and_bias', [pytest.param(True, marks=pytest.mark.slow), False])
def test_sgd_with_l2_weight_decay(decay_bn_and_bias):
  settings, model, state, step, batch = _setup(weight_decay=0.01,
                                               decay_bn_and_bias=decay_bn_and_bias)
  grads = _data_gradient(settings, model, state, batch)
  new_state, metrics = step(state, batch, jax.random.key(1))
  expected = jax.tree.map(
      lambda p, g: p - 0.1 * (g + (0.01 if (decay_bn_and_bias or p.ndim > 1) else 0.0) * p),
      state.params, grads)
  _assert_tree_close(new_state.params, expected)
  assert float(metrics['learning_rate']) == pytest.approx(0.1)
  assert int(new_state.step) == 1


def test_label_smoothing_loss():
  logits = jnp.array([[2.0, 0.0, -1.0]])
  smoothed = steps.cross_entropy(logits, jnp.array([0]), 0.3)
  log_p = jax.nn.log_softmax(logits)[0]
  target = np.array([0.7 + 0.1, 0.1, 0.1])
  assert float(smoothed[0]) == pytest.approx(float(-(target * log_p).sum()), rel=1e-6)


def test_ema_of_weights():
  _, _, state, step, batch = _setup(ema_decay=0.9)
  new_state, _ = step(state, batch, jax.random.key(1))
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.params, new_state.params)
  _assert_tree_close(new_state.ema_params, expected)


def test_resnet110_warmup_holds_low_lr_until_error_threshold():
  _, _, state, step, batch = _setup(warmup_lr=0.01, warmup_until_error=0.8)
  assert bool(state.warming_up)
  new_state, metrics = step(state, batch, jax.random.key(1))
  assert float(metrics['learning_rate']) == pytest.approx(0.01)
  assert bool(new_state.warming_up) == (float(metrics['error']) >= 0.8)
  done = new_state.replace(warming_up=jnp.asarray(False))
  _, metrics = step(done, batch, jax.random.key(2))
  assert float(metrics['learning_rate']) == pytest.approx(0.1)


def test_non_finite_gradients_are_flagged():
  _, _, state, step, batch = _setup()
  batch = dict(batch, image=batch['image'].at[0, 0, 0, 0].set(jnp.nan))
  _, metrics = step(state, batch, jax.random.key(1))
  assert float(metrics['grads_finite']) == 0.0


@pytest.mark.parametrize('optimizer', ['adamw', pytest.param('lars', marks=pytest.mark.slow)])
def test_other_optimizers_match_optax_directly(optimizer, x64):
  # float64: Adam's first step g/(|g| + 1e-8) turns rounding in tiny gradients into large
  # update differences; a large decay (0.5) keeps the rest of the update well above it.
  settings, model, state, step, batch = _setup('float64', name=optimizer, weight_decay=0.5,
                                               weight_decay_mode='decoupled', momentum=0.9)
  grads = _data_gradient(settings, model, state, batch)
  if optimizer == 'adamw':
    reference = optax.adamw(0.1, b1=0.9, weight_decay=0.5)
  else:
    reference = optax.lars(0.1, weight_decay=0.5, momentum=0.9)
  updates, _ = jax.jit(reference.update)(grads, reference.init(state.params), state.params)
  new_state, _ = step(state, batch, jax.random.key(1))
  expected = optax.apply_updates(state.params, updates)
  # Adam's first step is g/(|g| + 1e-8): rounding in tiny |g| moves it; compare the rest.
  for new, ref, g in zip(*map(jax.tree.leaves, (new_state.params, expected, grads))):
    assert new.dtype == jnp.float64
    robust = np.abs(np.asarray(g)) > 1e-10
    np.testing.assert_allclose(np.asarray(new)[robust], np.asarray(ref)[robust], rtol=1e-10,
                               atol=1e-12)
