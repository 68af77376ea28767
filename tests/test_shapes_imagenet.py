"""Output shapes and finite outputs: the ImageNet ResNets and their plain twins."""

import jax.numpy as jnp
import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('imagenet'))
def test_forward_shape_and_finite(name):
  logits, eval_shape, num_classes = check_forward(name)
  assert logits.shape == (2, num_classes)
  assert eval_shape == (2, num_classes)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
