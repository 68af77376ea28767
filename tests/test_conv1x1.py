"""`conv1x1_as_dot`: 1x1 convolutions as matrix products give the same network (parameters,
outputs, gradients) as `nn.Conv`; the trainer's `conv1x1` key resolves and validates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.config import boundary, resolve
from jax_resnet.errors import ConfigError
from jax_resnet.layers import PointwiseConv
from jax_resnet.training import setup

# Long numerical checks of code that does not differ between JAX versions: CI runs them in its
# newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize('shape, strides', [((2, 9, 9, 8), (1, 1)), ((2, 9, 9, 8), (2, 2)),
                                            ((2, 4, 6, 6, 8), (1, 2, 2))])
def test_pointwise_conv_equals_a_1x1_convolution(shape, strides):
  x = jax.random.normal(jax.random.key(0), shape)
  ones = (1,) * (len(shape) - 2)
  conv = nn.Conv(16, ones, strides, padding=[(0, 0)] * len(ones), use_bias=False)
  variables = conv.init(jax.random.key(1), x)
  expected = conv.apply(variables, x)
  dot = PointwiseConv(16, strides)
  assert jax.tree.map(jnp.shape, dot.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, variables)
  out = dot.apply(variables, x)
  assert out.shape == expected.shape
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def _loss_and_grads(model, variables, x):
  """Eval-mode BatchNorm: batch statistics over resnet50's last 1x1 maps of two images would
  amplify summation-order differences far past round-off (docs/testing.md)."""
  def loss(params):
    return jnp.sum(model.apply({**variables, 'params': params}, x, train=False) ** 2)
  return jax.jit(jax.value_and_grad(loss))(variables['params'])


@pytest.mark.parametrize('name, shape', [('resnet50', (2, 32, 32, 3)),
                                         ('r3d_18', (1, 2, 16, 16, 3))])
def test_model_with_dot_equals_model_with_conv(name, shape, x64):
  """The same maths in another order: compared in float64, near round-off (one block per
  stage: float64 convolutions are slow on XLA:CPU)."""
  x = jax.random.normal(jax.random.key(0), shape, jnp.float64)
  f64 = dict(num_classes=5, dtype='float64', param_dtype='float64', stage_sizes=(1, 1, 1, 1))
  conv_model = jr.create_model(name, **f64)
  dot_model = jr.create_model(name, conv1x1_as_dot=True, **f64)
  variables = conv_model.init(jax.random.key(1), x, train=False)
  dot_variables = dot_model.init(jax.random.key(1), x, train=False)
  assert jax.tree.structure(dot_variables) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(dot_variables), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)  # same names, shapes and initialisers
  assert jax.tree.leaves(variables)[0].dtype == jnp.float64
  np.testing.assert_allclose(dot_model.apply(variables, x, train=False),
                             conv_model.apply(variables, x, train=False), rtol=1e-10)
  (loss, grads), (dot_loss, dot_grads) = (_loss_and_grads(conv_model, variables, x),
                                          _loss_and_grads(dot_model, variables, x))
  np.testing.assert_allclose(dot_loss, loss, rtol=1e-12)
  for a, b in zip(jax.tree.leaves(dot_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(b))))


def test_config_key_resolves_by_backend_and_rejects_other_values():
  on_cpu = jax.default_backend() == 'cpu'
  for backend in ('cpu', 'gpu', 'tpu'):
    assert (boundary.conv1x1_as_dot('auto', backend), boundary.conv1x1_as_dot('conv', backend),
            boundary.conv1x1_as_dot('dot', backend)) == (backend == 'cpu', False, True)
  config = jr.load_config('default')
  assert config.conv1x1 == 'auto'
  assert setup.build_model(resolve(config)).conv1x1_as_dot is on_cpu
  assert resolve(config, backend='gpu').model_kwargs['conv1x1_as_dot'] is False
  assert resolve(config, backend='cpu').model_kwargs['conv1x1_as_dot'] is True
  config.conv1x1 = 'fast'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == ("Invalid config: conv1x1 must be one of 'auto', 'conv', 'dot', got "
                            "'fast'.")
