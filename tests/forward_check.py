"""Shared by the per-family shape tests: one real forward of a registered model at a small
input, eagerly (op by op) so a 1202-layer net does not pay a whole-graph compile."""

import re

import jax
import jax.numpy as jnp

import jax_resnet as jr


def small_input(name, batch=2):
  info = jr.model_info(name)
  if info.input_kind == 'video':
    return jnp.ones((batch, 4, 32, 32, 3))
  side = 64 if info.family == 'imagenet' else 16
  return jax.random.uniform(jax.random.key(1), (batch, side, side, 3))


def check_forward(name):
  """Init, then a train-mode forward (batch statistics) on a small input: (2, num_classes)
  float32 finite logits, the same eval-mode shape, statistics updated for every BN (none for
  GroupNorm nets)."""
  model = jr.create_model(name)
  x = small_input(name)
  variables = model.init(jax.random.key(0), x, train=False)
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  eval_shape = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables).shape
  assert jax.tree.structure(updates.get('batch_stats', {})) == jax.tree.structure(
      variables.get('batch_stats', {}))
  assert ('batch_stats' in variables) == (model.norm == 'batch')
  assert logits.shape == eval_shape == (2, model.num_classes)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def model_group(name):
  """Splits the registry so that each shape-test file stays well under a minute."""
  info = jr.model_info(name)
  if info.input_kind == 'video':
    return 'video'
  if info.family == 'cifar':
    return 'cifar'
  if name.startswith('bit_'):
    return 'bit'
  if name == 'resnet26' or re.fullmatch(r'resnet\d+d', name):
    return 'resnet_d'
  if name.startswith(('resnet', 'plain')):
    return 'imagenet'
  return 'imagenet_variants'


def models_in(group):
  return [n for n in jr.list_models() if model_group(n) == group]
