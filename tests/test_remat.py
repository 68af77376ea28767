"""remat ('block', 'save_convs') recomputes what 'none' keeps: the same loss, gradients and
BatchNorm statistics (float32, 1e-6 relative) for a tiny copy of each family, with scan_blocks,
output_stride, drop path (the same masks) and through NNX."""

import functools

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_resnet as jr
import jax_resnet.nnx as jrn

IMAGE = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
CLIP = jax.random.normal(jax.random.key(1), (2, 4, 32, 32, 3))
SMALL = dict(stage_sizes=(1, 1, 1, 1), stage_widths=(8, 16, 16, 32))
# One tiny copy per family; the dropping ones prove the masks are the same.
FAMILIES = {
    'resnet18': dict(SMALL, drop_path_rate=0.3, output_stride=16),  # basic, dilated
    'resnet50': dict(SMALL, output_stride=8),                   # bottleneck, dilated
    'preact_resnet18': dict(SMALL),                             # pre-activation
    'resnext50_32x4d': dict(SMALL, groups=4, base_width=16),     # grouped
    'resnet26d': dict(SMALL, stem_width=8),                     # ResNet-D
    'bit_resnet50x1': dict(SMALL, stem_width=32, stage_widths=(32,) * 4),  # GroupNorm + WS
    'wrn16_8': dict(stage_sizes=(1, 1, 1), stage_widths=(8, 8, 8), dropout_rate=0.3),
    'resnet20': dict(stage_sizes=(1, 3, 1), stage_widths=(16, 16, 32), scan_blocks=True,
                     drop_path_rate=0.2),                       # CIFAR, scanned
    'r2plus1d_18': dict(SMALL, drop_path_rate=0.2),             # video
}
DEFAULT = ('resnet20',)  # the others: --all (15 to 25 s each)


def _loss_and_grads(model, variables, x):
  """Loss, parameter gradients and new statistics of one train-mode call."""
  labels = jnp.arange(x.shape[0]) % 10

  def loss_fn(params):
    logits, updates = model.apply({**variables, 'params': params}, x, train=True,
                                  mutable=['batch_stats'], rngs={'dropout': jax.random.key(7)})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updates.get('batch_stats', {})

  return jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])


def _relative(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _max_relative(tree, reference):
  return max(jax.tree.leaves(jax.tree.map(_relative, tree, reference)), default=0.0)


@pytest.mark.parametrize('name', [pytest.param(n, marks=() if n in DEFAULT else pytest.mark.slow)
                                  for n in FAMILIES])
def test_remat_keeps_loss_gradients_and_statistics(name):
  x = CLIP if jr.model_info(name).input_kind == 'video' else IMAGE
  options = dict(FAMILIES[name], num_classes=10)
  plain = jr.create_model(name, **options)
  variables = jax.jit(functools.partial(plain.init, train=False))(jax.random.key(0), x)
  (loss, stats), grads = jax.jit(functools.partial(_loss_and_grads, plain))(variables, x)
  for remat in ('block', 'save_convs'):
    model = jr.create_model(name, remat=remat, **options)
    run = functools.partial(_loss_and_grads, model)
    assert 'remat' in str(jax.make_jaxpr(run)(variables, x))  # really rematerialised
    (remat_loss, remat_stats), remat_grads = jax.jit(run)(variables, x)
    assert _relative(remat_loss, loss) <= 1e-6
    assert _max_relative(remat_grads, grads) <= 1e-6
    assert _max_relative(remat_stats, stats) <= 1e-6
  # The dropping nets drop: without their masks the loss is another one.
  if options.get('drop_path_rate') or options.get('dropout_rate'):
    calm = jr.create_model(name, **{**options, 'drop_path_rate': 0.0, 'dropout_rate': 0.0}
                           if name == 'wrn16_8' else {**options, 'drop_path_rate': 0.0})
    (calm_loss, _), _ = jax.jit(functools.partial(_loss_and_grads, calm))(variables, x)
    assert _relative(calm_loss, loss) > 1e-4


@pytest.mark.slow  # 16 s; the Linen remat test runs by default
def test_remat_through_nnx_gives_the_linen_gradients():
  options = dict(FAMILIES['resnet18'], num_classes=10)
  model = jrn.create_model('resnet18', rngs=nnx.Rngs(params=0, dropout=3), remat='block',
                           input_shape=(32, 32, 3), **options)
  linen = jr.create_model('resnet18', **options)
  variables = jrn.to_linen(model)
  labels = jnp.arange(2) % 10

  @nnx.jit
  def nnx_grads(model):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(
          model(IMAGE, rngs=jax.random.key(7)), labels).mean()
    return nnx.value_and_grad(loss_fn)(model)

  loss, grads = nnx_grads(model)
  (ref_loss, _), ref_grads = jax.jit(functools.partial(_loss_and_grads, linen))(variables, IMAGE)
  assert _relative(loss, ref_loss) <= 1e-6
  pure = nnx.to_pure_dict(grads)  # the NNX head is its own nnx.Linear, beside the params
  assert _max_relative({**pure['params'], 'head': pure['head']}, ref_grads) <= 1e-6


def test_an_unknown_remat_is_one_line_naming_the_choices():
  with pytest.raises(ValueError) as error:
    jr.create_model('resnet20', remat='blocks')
  assert str(error.value) == ("resnet20: remat must be one of 'none', 'block', 'save_convs', "
                              "got 'blocks'.")
