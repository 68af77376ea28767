"""`output_stride`: the last stages dilated instead of strided, as timm's ResNet and ResNetV2
(`create_model(name, output_stride=...)`) and torchvision's `replace_stride_with_dilation`;
same weights, same logits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compiled
import jax_resnet as jr
from jax_resnet.weights import timm as timm_weights
from test_timm_models import TOLERANCE, _randomize

timm = pytest.importorskip('timm')
torch = pytest.importorskip('torch')

# 72 -> 18 after the stem: a dilated stage 3 and 4 at output stride 8 run on 9x9 maps (odd, so
# ResNet-D's stride-1 shortcut pool meets its zero padding).
SIDE = 72


def _timm_pair(timm_name, output_stride, seed=0):
  torch.manual_seed(seed)
  reference = _randomize(timm.create_model(timm_name, pretrained=False,
                                           output_stride=output_stride), seed)
  variables = timm_weights.from_timm(timm_name, reference.state_dict())
  ours = jr.create_model(timm_weights.resolve(timm_name), output_stride=output_stride)
  return reference, ours, variables


def _input(dtype=np.float32, batch=2):
  return np.random.default_rng(0).standard_normal((batch, SIDE, SIDE, 3)).astype(dtype)


def _torch_logits(model, x):
  with torch.no_grad():
    return model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _relative(ours, expected):
  assert ours.shape == expected.shape
  return float(np.max(np.abs(ours - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize('timm_name, output_stride', [
    ('resnet18', 8), ('resnet26', 16), ('resnext50_32x4d', 8), ('resnet26d', 8),
    ('resnet18d', 16), ('resnetv2_50', 8),
    pytest.param('resnetv2_50x1_bit', 16, marks=pytest.mark.slow)])
def test_logits_equal_timm_at_the_same_output_stride(timm_name, output_stride):
  reference, ours, variables = _timm_pair(timm_name, output_stride)
  x = _input()
  logits = np.asarray(compiled.apply(ours, variables, x, train=False))
  assert _relative(logits, _torch_logits(reference, x)) <= TOLERANCE


def test_logits_equal_torchvision_replace_stride_with_dilation():
  torchvision = pytest.importorskip('torchvision')
  from jax_resnet import weights
  torch.manual_seed(0)
  reference = _randomize(torchvision.models.resnet50(
      replace_stride_with_dilation=[False, True, True]), 0)
  variables = weights.from_torchvision('resnet50', reference.state_dict())
  x = _input()
  logits = np.asarray(compiled.apply(jr.create_model('resnet50', output_stride=8), variables, x,
                                     train=False))
  assert _relative(logits, _torch_logits(reference, x)) <= TOLERANCE


def test_float64_equals_timm_to_round_off(x64):
  # Converted from float32 (exact in float64), then both sides compute in float64.
  reference, _, variables = _timm_pair('resnet26d', 8, seed=1)
  reference = reference.double()
  ours = jr.create_model('resnet26d', output_stride=8, dtype='float64', param_dtype='float64')
  variables = jax.tree.map(lambda v: np.asarray(v, np.float64), variables)
  x = _input(np.float64, batch=1)
  logits = np.asarray(compiled.apply(ours, variables, x, train=False))
  assert logits.dtype == np.float64
  assert _relative(logits, _torch_logits(reference, x)) <= 1e-12


def _shapes(tree):
  return jax.tree.map(lambda a: (a.shape, a.dtype), tree)


@pytest.mark.parametrize('name', ['resnet50', 'resnet18d', 'preact_resnet18', 'bit_resnet50x1'])
def test_same_parameters_and_dilated_feature_maps_at_every_stride(name):
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  shapes = {}
  for output_stride in (32, 16, 8):
    model = jr.create_model(name, output_stride=output_stride)
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    shapes[output_stride] = _shapes(variables)
    features = jax.eval_shape(functools.partial(model.apply, train=False, return_features=True),
                              variables, x)
    sizes = [features[f'stage{i}'].shape[1] for i in range(1, 5)]
    assert sizes == [16, 8, max(4, 64 // output_stride), 64 // output_stride]
  assert shapes[32] == shapes[16] == shapes[8]


def test_strides_a_net_cannot_honour_are_refused_in_one_line():
  cases = [
      ('resnet20', 16, 'resnet20: output_stride=16 cannot be honoured: this net reduces its '
                       'input 4 times at most; leave output_stride at 32 (no dilation).'),
      ('wrn16_8', 8, 'wrn16_8: output_stride=8 cannot be honoured: this net reduces its input '
                     '4 times at most; leave output_stride at 32 (no dilation).'),
      ('r3d_18', 16, 'r3d_18: output_stride=16: video nets keep their strides (no dilated '
                     'stages); leave output_stride at 32.'),
      ('resnet50', 4, 'resnet50: output_stride must be 8, 16 or 32, got 4.'),
  ]
  for name, output_stride, message in cases:
    with pytest.raises(ValueError) as err:
      jr.create_model(name, output_stride=output_stride)
    assert str(err.value) == message
  # The default is every model's: CIFAR nets reduce 4 times and stay undilated.
  assert jr.create_model('resnet20').output_stride == 32


def test_trainer_and_nnx_pass_output_stride_to_the_model():
  from flax import nnx
  from jax_resnet.config import boundary
  config = jr.base_config()
  config.model = 'resnet18'
  config.model_options.output_stride = 16
  assert boundary.model_kwargs(config, 'cpu')['output_stride'] == 16
  model = jr.nnx.create_model('resnet18', output_stride=8, rngs=nnx.Rngs(0))
  assert model.module.output_stride == 8
  features = model(jnp.zeros((1, 32, 32, 3)), return_features=True)
  assert features['stage4'].shape == (1, 4, 4, 512)
