"""Every model computes in float64 when asked (dtype = param_dtype = float64 under
jax_enable_x64): no operation of the traced train step, forward and backward, nor of a
forward-mode derivative (the research tools use jax.jvp/jacfwd), produces a float narrower than
float64, and parameters, statistics, logits and gradients are float64."""

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from jax_resnet.config import resolve
from jax_resnet.errors import ConfigError
from jax_resnet.training import setup

MODELS = [
    ('resnet18', (2, 32, 32, 3), {}),
    ('resnet50', (2, 32, 32, 3), {'conv1x1_as_dot': True, 'drop_path_rate': 0.1}),
    ('resnet20', (2, 8, 8, 3), {'zero_init_residual': True}),
    ('plain20', (2, 8, 8, 3), {}),
    ('preact_resnet164', (2, 8, 8, 3), {'stage_sizes': (2, 2, 2), 'scan_blocks': True,
                                        'drop_path_rate': 0.2}),
    ('wrn16_4', (2, 8, 8, 3), {'dropout_rate': 0.3}),
    ('resnext50_32x4d', (2, 32, 32, 3), {'stage_sizes': (1, 1, 1, 1)}),
    ('r2plus1d_18', (1, 2, 16, 16, 3), {'stage_sizes': (1, 1, 1, 1)}),
    ('resnet26d', (2, 40, 40, 3), {'stage_sizes': (1, 1, 1, 1)}),
    ('bit_resnet50x1', (2, 32, 32, 3), {'stage_sizes': (1, 1, 1, 1), 'stem_width': 32,
                                        'stage_widths': (32,) * 4, 'stem_conv': 'pad_channels'}),
]


def _narrow_floats(jaxpr, found):
  """Names of the primitives in `jaxpr` (and the jaxprs inside it) with a float output
  narrower than float64."""
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      dtype = getattr(var.aval, 'dtype', None)
      if dtype is not None and jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 8:
        found.add(f'{eqn.primitive.name}:{dtype}')
    for param in eqn.params.values():
      for inner in param if isinstance(param, (tuple, list)) else [param]:
        inner = getattr(inner, 'jaxpr', inner)
        if hasattr(inner, 'eqns'):
          _narrow_floats(inner, found)
  return found


@pytest.mark.parametrize('name, shape, options', MODELS, ids=[m[0] for m in MODELS])
def test_train_step_is_float64_throughout(name, shape, options, x64):
  model = jr.create_model(name, num_classes=5, dtype='float64', param_dtype='float64',
                          **options)
  x = jnp.zeros(shape, jnp.float64)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  variables.setdefault('batch_stats', {})  # GroupNorm nets keep none

  def loss(params, batch_stats, x):
    logits, state = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)})
    return jnp.sum(logits ** 2), (logits, state)

  step = jax.value_and_grad(loss, has_aux=True)
  jaxpr = jax.make_jaxpr(step)(variables['params'], variables['batch_stats'], x)
  assert _narrow_floats(jaxpr.jaxpr, set()) == set()
  (_, (logits, state)), grads = jax.eval_shape(step, variables['params'],
                                               variables['batch_stats'], x)
  leaves = jax.tree.leaves((variables, logits, state, grads))
  assert {str(leaf.dtype) for leaf in leaves} == {'float64'}

  def tangent(variables, x):  # d logits / d x along x, batch statistics in the graph
    forward = lambda v: loss(variables['params'], variables['batch_stats'], v)[1][0]
    return jax.jvp(forward, (x,), (x,))[1]
  assert _narrow_floats(jax.make_jaxpr(tangent)(variables, x).jaxpr, set()) == set()
  assert jax.eval_shape(tangent, variables, x).dtype == jnp.float64


def test_trainer_float64_without_x64_is_one_clear_error():
  config = jr.load_config('default')
  config.dtype = 'float64'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == ("Invalid config: dtype='float64' needs 64-bit arrays, which JAX "
                            'turns off by default: set JAX_ENABLE_X64=1 (train.py does it for '
                            'you).')


def test_trainer_float64_builds_a_float64_model(x64):
  config = jr.load_config('default')
  config.dtype = 'float64'
  spec = resolve(config)
  assert (spec.model_kwargs['dtype'], spec.model_kwargs['param_dtype']) == ('float64',
                                                                            'float64')
  model = setup.build_model(spec)
  assert (model.dtype, model.param_dtype) == (jnp.float64, jnp.float64)
