"""BiT (pre-activation, GroupNorm, Weight Standardization, width xk): output and feature shapes
of every row from shapes alone, real forwards of the ones a CPU holds."""

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr
from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('bit'))
def test_feature_shapes_scale_with_the_width_multiplier(name):
  k = int(name.rsplit('x', 1)[1])
  model = jr.create_model(name)
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  features, variables = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False,
                                       return_features=True), x)
  assert list(variables) == ['params']  # GroupNorm: no batch statistics
  shapes = {key: value.shape for key, value in features.items()}
  assert shapes == {'stem': (2, 16, 16, 64 * k), 'stage1': (2, 16, 16, 256 * k),
                    'stage2': (2, 8, 8, 512 * k), 'stage3': (2, 4, 4, 1024 * k),
                    'stage4': (2, 2, 2, 2048 * k), 'pre_logits': (2, 2048 * k),
                    'logits': (2, 1000)}


# Real forwards where CI runs the slow tests (the default run checks BiT's shapes above and its
# logits against timm); the wider ones (the same code at k times the channels) by shapes only.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['bit_resnet50x1', 'bit_resnet101x1'])
def test_forward_shape_and_finite(name):
  check_forward(name)
