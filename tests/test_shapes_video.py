"""Output shapes and finite outputs: the 3D video nets (r3d, mc3, r(2+1)d)."""

import jax.numpy as jnp
import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('video'))
def test_forward_shape_and_finite(name):
  logits, eval_shape, num_classes = check_forward(name)
  assert logits.shape == (2, num_classes)
  assert eval_shape == (2, num_classes)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
