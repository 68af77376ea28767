"""Exact trainable-parameter counts (torchvision's way: BN scale/bias in, running stats out),
from shapes alone (`jax.eval_shape`, no compute), and the shortcut options' exact cost."""

import jax
import jax.numpy as jnp
import pytest

import jax_resnet as jr

# torchvision's counts, and He et al. 2015 Table 6 for the CIFAR nets.
REFERENCE_COUNTS = {
    'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032,
    'resnet101': 44_549_160, 'resnet152': 60_192_808, 'resnet200': 64_673_832,
    'wide_resnet50_2': 68_883_240, 'wide_resnet101_2': 126_886_696,
    'resnext50_32x4d': 25_028_904, 'resnext101_32x8d': 88_791_336,
    'resnext101_64x4d': 83_455_272,
    'r3d_18': 33_371_472, 'mc3_18': 11_695_440, 'r2plus1d_18': 31_505_325,
    'resnet20': 269_722, 'resnet32': 464_154, 'resnet44': 658_586, 'resnet56': 853_018,
    'resnet110': 1_727_962, 'resnet1202': 19_421_274,
}
# timm 1.0.31's counts (timm.create_model(name) parameters): ResNet-D, resnet26, ResNetV2 and BiT
# (resnetv2_<depth>x<k>_bit here bit_resnet<depth>x<k>, resnetv2_50 here preact_resnet50).
TIMM_COUNTS = {
    'resnet18d': 11_708_744, 'resnet34d': 21_816_904, 'resnet50d': 25_576_264,
    'resnet101d': 44_568_392, 'resnet152d': 60_212_040, 'resnet200d': 64_693_064,
    'resnet26': 15_995_176, 'resnet26d': 16_014_408,
    'preact_resnet50': 25_549_352, 'preact_resnet101': 44_541_480,
    'bit_resnet50x1': 25_549_352, 'bit_resnet50x3': 217_319_080,
    'bit_resnet101x1': 44_541_480, 'bit_resnet101x3': 387_934_888,
    'bit_resnet152x2': 236_335_208, 'bit_resnet152x4': 936_533_224,
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def param_shapes(name, **overrides):
  model = jr.create_model(name, **overrides)
  video = isinstance(model, jr.VideoResNet)
  x = jnp.zeros((1, 4, 32, 32, 3) if video else (1, 32, 32, 3))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))['params']


def count(name, **overrides):
  return jr.count_params(param_shapes(name, **overrides))


# resnet1202's count (a shape trace of 1202 layers) where CI runs the slow tests; the CIFAR
# formula test covers its family by default.
@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n == 'resnet1202' else n
    for n in sorted(REFERENCE_COUNTS)])
def test_reference_parameter_count(name):
  assert count(name) == REFERENCE_COUNTS[name]


@pytest.mark.parametrize('name', sorted(TIMM_COUNTS))
def test_timm_parameter_count(name):
  assert count(name) == TIMM_COUNTS[name]


def test_resnet_d_adds_exactly_the_deep_stem():
  """Three 3x3 convs (3->32->32->64) with BN after the first two replace the 7x7 (3->64); the
  average-pool shortcut has no parameters."""
  deep = 9 * (3 * 32 + 32 * 32 + 32 * 64) + 2 * (2 * 32)
  for depth in (18, 50, 200):
    assert count(f'resnet{depth}d') - count(f'resnet{depth}') == deep - 7 * 7 * 3 * 64
  assert count('resnet26d') - count('resnet26') == deep - 7 * 7 * 3 * 64


def test_bit_has_the_parameters_of_the_batchnorm_preact_net():
  """GroupNorm has BatchNorm's scale and bias, Weight Standardization no parameters."""
  assert count('bit_resnet50x1') == count('preact_resnet50')
  assert count('bit_resnet101x1') == count('preact_resnet101')
  stats = jax.eval_shape(lambda: jr.create_model('bit_resnet50x1').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  assert list(stats) == ['params']


def test_cifar_resnet_count_formula():
  """resnet(6n+2) with option A: conv/BN weights of 3 stages plus stem and a 64->10 head."""
  for depth in CIFAR_DEPTHS + (1202,):
    n = (depth - 2) // 6
    blocks = sum(n * 2 * (9 * c * c + 2 * c) for c in (16, 32, 64))
    widening = (9 * 16 * 32 + 2 * 32 - 9 * 32 * 32 - 2 * 32) + (9 * 32 * 64 - 9 * 64 * 64)
    stem, head = 9 * 3 * 16 + 2 * 16, 64 * 10 + 10
    assert count(f'resnet{depth}') == blocks + widening + stem + head


@pytest.mark.parametrize('depth', CIFAR_DEPTHS)
def test_plain_twin_has_exactly_the_residual_nets_parameters(depth):
  assert count(f'plain{depth}') == count(f'resnet{depth}')


def _projection(cin, cout):
  return cin * cout + 2 * cout  # 1x1 conv + BN scale and bias


@pytest.mark.parametrize('depth', (20, 56))
def test_shortcut_b_and_c_add_exactly_the_projections(depth):
  n = (depth - 2) // 6
  a = count(f'resnet{depth}')
  assert count(f'resnet{depth}', shortcut='B') - a == _projection(16, 32) + _projection(32, 64)
  identity_blocks = n * _projection(16, 16) + (n - 1) * (_projection(32, 32) +
                                                         _projection(64, 64))
  assert count(f'resnet{depth}', shortcut='C') - a == (
      _projection(16, 32) + _projection(32, 64) + identity_blocks)


def test_imagenet_shortcut_a_removes_the_three_projections():
  removed = _projection(64, 128) + _projection(128, 256) + _projection(256, 512)
  assert count('resnet18') - count('resnet18', shortcut='A') == removed
  assert count('plain18') == count('resnet18', shortcut='A')


def test_projection_present_only_where_the_shortcut_option_says():
  b = param_shapes('resnet20', shortcut='B')
  assert 'proj_conv' in b['stage2_block1'] and 'proj_bn' in b['stage2_block1']
  assert 'proj_conv' not in b['stage1_block1'] and 'proj_conv' not in b['stage2_block2']
  a = param_shapes('resnet20')
  assert not [k for k in jax.tree_util.tree_flatten_with_path(a)[0]
              if 'proj' in jax.tree_util.keystr(k[0])]
  c = param_shapes('resnet20', shortcut='C')
  assert all('proj_conv' in c[f'stage{s}_block{b}'] for s in (1, 2, 3) for b in (1, 2, 3))
  # Pre-activation projections read the activated input and carry no BN (He et al. 2016).
  p = param_shapes('preact_resnet164')
  assert 'proj_conv' in p['stage1_block1'] and 'proj_bn' not in p['stage1_block1']


def test_grouped_and_wide_bottleneck_widths():
  x = param_shapes('resnext50_32x4d')['stage1_block1']['conv2']['kernel']
  assert x.shape == (3, 3, 128 // 32, 128)
  w = param_shapes('wide_resnet50_2')['stage1_block1']['conv2']['kernel']
  assert w.shape == (3, 3, 128, 128)


def test_r2plus1d_mid_width_keeps_the_3d_parameter_budget():
  p = param_shapes('r2plus1d_18')['stage2_block1']
  mid = (64 * 128 * 27) // (64 * 9 + 3 * 128)  # torchvision's midplanes = 230
  assert p['conv1_spatial']['kernel'].shape == (1, 3, 3, 64, mid) == (1, 3, 3, 64, 230)
  assert p['conv1_temporal']['kernel'].shape == (3, 1, 1, mid, 128)
