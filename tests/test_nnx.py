"""The Flax NNX interface (jax_resnet.nnx): the same network as the Linen model, its
train()/eval() switch, its random streams, and training with nnx.Optimizer step for step as
the Linen train step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jax_resnet as jr
import jax_resnet.nnx as jrn

X = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
LABELS = jnp.array([0, 3, 7, 9])


@functools.lru_cache(maxsize=None)
def _linen(drop_path_rate=0.0):
  """resnet20 and its variables, with running statistics away from their (0, 1) start so that
  eval mode reads them for real."""
  module = jr.create_model('resnet20', drop_path_rate=drop_path_rate)
  variables = jax.jit(functools.partial(module.init, train=False))(jax.random.key(0), X[:1])
  keys = iter(jax.random.split(jax.random.key(2), 64))
  stats = {'mean': lambda v: 0.1 * jax.random.normal(next(keys), v.shape),
           'var': lambda v: jax.random.uniform(next(keys), v.shape, minval=0.5, maxval=2.0)}
  batch_stats = jax.tree_util.tree_map_with_path(
      lambda path, v: stats[path[-1].key](v), variables['batch_stats'])
  return module, {'params': variables['params'], 'batch_stats': batch_stats}


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_create_model_draws_linen_initialisation_from_the_params_stream():
  model = jrn.create_model('resnet20', rngs=nnx.Rngs(params=7, dropout=1))
  key = nnx.Rngs(params=7).params()    # the first key of the same stream
  module = jr.create_model('resnet20')
  expected = jax.jit(functools.partial(module.init, train=False))({'params': key}, X[:1])
  _assert_trees_equal(jrn.to_linen(model), expected)
  # NNX variable types: what nnx.Optimizer(wrt=nnx.Param) and nnx.state filters select.
  assert len(jax.tree.leaves(nnx.state(model, nnx.Param))) == 59  # 19 convs, 19 BN x 2, head 2
  assert len(jax.tree.leaves(nnx.state(model, nnx.BatchStat))) == 38
  assert (model.use_running_average, model.deterministic) == (False, False)  # training mode
  if hasattr(nnx, 'view'):   # flax >= 0.12: an eval view sharing the variables
    view = nnx.view(model, deterministic=True, use_running_average=True)
    assert (view.use_running_average, view.deterministic) == (True, True)
    assert (model.use_running_average, model.deterministic) == (False, False)
    assert jax.tree.leaves(view.params)[0] is jax.tree.leaves(model.params)[0]
  model.eval()
  assert (model.use_running_average, model.deterministic) == (True, True)


def test_eval_mode_matches_linen_and_leaves_statistics_unchanged():
  module, variables = _linen()
  model = jrn.from_linen('resnet20', variables)
  model.eval()
  logits = model(X)
  np.testing.assert_array_equal(logits, module.apply(variables, X, train=False))
  _assert_trees_equal(jrn.to_linen(model), variables)
  # The features dict passes through too.
  features = model(X, return_features=True)
  np.testing.assert_array_equal(features['logits'], logits)
  assert features['stage3'].shape == (4, 8, 8, 64)


def test_train_mode_matches_linen_and_updates_statistics_in_place():
  module, variables = _linen()
  model = jrn.from_linen('resnet20', variables)
  model.eval()
  model.train()
  logits = model(X)
  expected, updates = module.apply(variables, X, train=True, mutable=['batch_stats'])
  np.testing.assert_array_equal(logits, expected)
  _assert_trees_equal(jrn.to_linen(model)['batch_stats'], updates['batch_stats'])
  _assert_trees_equal(jrn.to_linen(model)['params'], variables['params'])
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), updates['batch_stats'],
                       variables['batch_stats'])
  assert min(jax.tree.leaves(moved)) > 1e-3   # every running statistic really changed
  # The model owns copies: the Linen variables it was built from are untouched.
  assert float(jnp.max(jnp.abs(jax.tree.leaves(variables['batch_stats'])[0]))) > 0


def test_three_sgd_steps_equal_the_linen_steps():
  module, variables = _linen()
  tx = optax.sgd(0.1, momentum=0.9)
  batches = [jax.random.normal(jax.random.key(10 + i), X.shape) for i in range(3)]

  @jax.jit
  def linen_step(params, batch_stats, opt_state, x):
    def loss_fn(params):
      logits, updates = module.apply({'params': params, 'batch_stats': batch_stats}, x,
                                     train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean()
      return loss, updates['batch_stats']
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  model = jrn.from_linen('resnet20', variables)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)   # flax 0.11.2 and 0.12: same API

  @nnx.jit
  def nnx_step(model, optimizer, x):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), LABELS).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  params, batch_stats, opt_state = variables['params'], variables['batch_stats'], tx.init(
      variables['params'])
  for x in batches:
    params, batch_stats, opt_state, linen_loss = linen_step(params, batch_stats, opt_state, x)
    nnx_loss = nnx_step(model, optimizer, x)
    np.testing.assert_allclose(nnx_loss, linen_loss, rtol=1e-6)
  out = jrn.to_linen(model)
  # Two jitted programs of the same float32 maths. Measured: bit-identical (max |diff| 0.0
  # under flax 0.11.2, 0.12.8 and 0.12.12, with and without XLA's optimisation passes), but
  # nothing obliges XLA to compile the two alike, so the bound is float32 round-off grown over
  # three steps. The weights move by ~0.2, far beyond it.
  linen_out = {'params': params, 'batch_stats': batch_stats}
  assert jax.tree.structure(out) == jax.tree.structure(linen_out)
  for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(linen_out)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(params), jax.tree.leaves(variables['params'])))
  assert moved > 1e-2
  assert int(optimizer.step[...]) == 3
  # The trained variables back in Linen give the NNX model's eval logits.
  model.eval()
  np.testing.assert_array_equal(model(X), module.apply(out, X, train=False))


def test_drop_path_draws_from_the_dropout_stream_and_eval_is_deterministic():
  module, variables = _linen(drop_path_rate=0.5)
  model = jrn.from_linen(module, variables, rngs=nnx.Rngs(dropout=1))
  twin = jrn.from_linen(module, variables, rngs=nnx.Rngs(dropout=1))
  other = jrn.from_linen(module, variables, rngs=nnx.Rngs(dropout=2))
  first, second = model(X), model(X)
  np.testing.assert_array_equal(first, twin(X))                 # same seed, same masks
  assert float(jnp.max(jnp.abs(first - second))) > 0.1           # the stream moves on
  assert float(jnp.max(jnp.abs(first - other(X)))) > 0.1         # another seed, other masks
  # A key given at the call is the key Linen's 'dropout' rng gets.
  key = jax.random.key(5)
  expected, _ = module.apply(variables, X, train=True, mutable=['batch_stats'],
                             rngs={'dropout': key})
  np.testing.assert_array_equal(model(X, rngs=key), expected)
  model.eval()
  logits = model(X)
  np.testing.assert_array_equal(logits, model(X))
  trained = jrn.to_linen(model)   # running statistics updated by the four calls above
  np.testing.assert_array_equal(logits, module.apply(trained, X, train=False))
  # Batch statistics without masks: the same net with drop_path_rate 0.
  model.set_attributes(use_running_average=False)
  assert (model.use_running_average, model.deterministic) == (False, True)
  still, updates = module.clone(drop_path_rate=0.0).apply(trained, X, train=True,
                                                          mutable=['batch_stats'])
  np.testing.assert_array_equal(model(X), still)
  np.testing.assert_array_equal(model(X), still)   # no masks: the same twice
  _assert_trees_equal(jrn.to_linen(model)['params'], trained['params'])
  # Masks with frozen statistics: Linen's freeze_batch_norm; the statistics stay.
  model.set_attributes(use_running_average=True, deterministic=False)
  before = jrn.to_linen(model)
  frozen, _ = module.clone(freeze_batch_norm=True).apply(
      before, X, train=True, mutable=['batch_stats'], rngs={'dropout': key})
  np.testing.assert_array_equal(model(X, rngs=key), frozen)
  _assert_trees_equal(jrn.to_linen(model), before)


def test_errors_name_what_went_wrong():
  with pytest.raises(ValueError) as linen_error:
    jr.create_model('resnet19')
  with pytest.raises(ValueError) as nnx_error:
    jrn.create_model('resnet19', rngs=nnx.Rngs(0))
  assert str(nnx_error.value) == str(linen_error.value)
  assert str(nnx_error.value).startswith("Unknown model 'resnet19'. Did you mean resnet18")

  # Variables of another model (resnet32 has five blocks per stage, resnet20 three).
  other = jr.create_model('resnet32')
  shapes = jax.eval_shape(functools.partial(other.init, train=False), jax.random.key(0),
                          X[:1])
  with pytest.raises(ValueError) as error:
    jrn.from_linen('resnet20', shapes)
  assert str(error.value) == (
      'variables do not fit resnet20: 60 unexpected (batch_stats/stage1_block4/bn1/mean, '
      'batch_stats/stage1_block4/bn1/var, batch_stats/stage1_block4/bn2/mean, ...).')

  # Drop-path in training mode with no random stream anywhere.
  module, variables = _linen(drop_path_rate=0.5)
  model = jrn.from_linen(module, variables)
  with pytest.raises(ValueError) as error:
    model(X)
  assert str(error.value) == (
      'ResNet drops paths or units in training mode and needs a random stream: build it with '
      'rngs=nnx.Rngs(...), pass model(x, rngs=...), or call model.eval() (or '
      'model.set_attributes(deterministic=True)).')
