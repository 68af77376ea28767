"""He (Kaiming) normal init, fan_out mode, and zero-initialised residual branches."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr

# Long numerical checks of code that does not differ between JAX versions: CI runs them in its
# newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow


def _init(name, **overrides):
  model = jr.create_model(name, **overrides)
  return model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)), train=False)['params']


def test_conv_kernels_have_he_fan_out_variance():
  params = _init('resnet50')
  kernels = {
      'conv_init': params['conv_init']['kernel'],
      'stage4_block2/conv2': params['stage4_block2']['conv2']['kernel'],
      'stage3_block1/conv3': params['stage3_block1']['conv3']['kernel'],
      'stage2_block1/proj_conv': params['stage2_block1']['proj_conv']['kernel'],
  }
  for name, k in kernels.items():
    *receptive, _, out_features = k.shape
    expected = math.sqrt(2.0 / (math.prod(receptive) * out_features))
    n = k.size
    # The sample std of n normals has relative standard error 1/sqrt(2n); allow 5 of them.
    assert abs(float(jnp.std(k)) / expected - 1) < 5 / math.sqrt(2 * n), name
    assert abs(float(jnp.mean(k))) < 5 * expected / math.sqrt(n), name


def test_batchnorm_starts_as_identity_affine():
  bn = _init('resnet20')['stage1_block1']['bn1']
  np.testing.assert_array_equal(bn['scale'], np.ones(16))
  np.testing.assert_array_equal(bn['bias'], np.zeros(16))


def test_zero_init_residual_zeroes_the_last_layer_of_each_branch():
  post = _init('resnet50', zero_init_residual=True)
  assert float(jnp.abs(post['stage1_block1']['bn3']['scale']).max()) == 0.0
  assert float(jnp.abs(post['stage1_block1']['bn2']['scale']).min()) == 1.0
  pre = _init('preact_resnet110', zero_init_residual=True)
  assert float(jnp.abs(pre['stage3_block18']['conv2']['kernel']).max()) == 0.0
  assert float(jnp.abs(pre['stage3_block18']['conv1']['kernel']).max()) > 0.0
  video = jr.create_model('r3d_18', zero_init_residual=True, stage_widths=(8, 8, 8, 8))
  v = video.init(jax.random.key(0), jnp.ones((1, 4, 16, 16, 3)), train=False)['params']
  assert float(jnp.abs(v['stage1_block1']['bn2']['scale']).max()) == 0.0
  assert float(jnp.abs(v['stage1_block1']['bn1']['scale']).min()) == 1.0
