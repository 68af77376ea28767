"""`stem_conv`: the ImageNet stem's 7x7/2 convolution computed with padded channels or as a
space-to-depth 4x4/1 convolution is the same network as the plain convolution: the same
parameter tree and initial values, outputs, gradients and tangents equal to float64 round-off;
float32 and bfloat16 within the default's own round-off. Plus the option's errors, the trainer
key and the benchmark flag."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import benchmark, stems
from jax_resnet.config import boundary, resolve
from jax_resnet.errors import ConfigError
from jax_resnet.training import setup

# Long numerical checks of code that does not differ between JAX versions: CI runs them in its
# newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

OPTIONS = ('pad_channels', 'space_to_depth')
F64_RTOL = 1e-12


def _relative_error(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _tree_relative_errors(a, b):
  return [_relative_error(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


def _image(shape, dtype):
  return jax.random.normal(jax.random.key(0), shape, dtype)


@pytest.mark.parametrize('kernel, strides, size', [
    ((7, 7), (2, 2), (16, 16)), ((7, 7), (2, 2), (17, 15)), ((7, 7), (2, 2), (1, 2)),
    ((3, 3), (2, 2), (9, 10)), ((5, 5), (3, 3), (10, 11)), ((1, 1), (2, 2), (5, 6))])
def test_space_to_depth_conv_equals_the_strided_convolution(x64, kernel, strides, size):
  """Odd sizes, a kernel that is not a multiple of the stride and a 1x1 kernel (its padded
  input is cropped) included."""
  x = _image((2,) + size + (3,), jnp.float64)
  w = jax.random.normal(jax.random.key(1), kernel + (3, 8), jnp.float64)
  expected = jax.lax.conv_general_dilated(x, w, strides, [(k // 2, k // 2) for k in kernel],
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  out = stems.space_to_depth_conv(x, w, strides)
  assert out.shape == expected.shape
  assert _relative_error(out, expected) < F64_RTOL
  padded = stems.padded_channels_conv(x, w, strides)
  assert padded.shape == expected.shape
  assert _relative_error(padded, expected) < F64_RTOL


def test_blocked_kernel_moves_each_tap_to_its_block():
  w = jnp.arange(7 * 7 * 3 * 2, dtype=jnp.float32).reshape(7, 7, 3, 2)
  blocked = stems.blocked_kernel(w, (2, 2))
  assert blocked.shape == (4, 4, 12, 2)
  # tap (2a + r, 2b + s), channel c -> tap (a, b), channel (r, s, c) = 6r + 3s + c
  np.testing.assert_array_equal(blocked[1, 2, 6 * 1 + 3 * 0 + 2], w[3, 4, 2])
  np.testing.assert_array_equal(blocked[3, 3, 0:3], w[6, 6])  # (r, s) = (0, 0)
  assert float(jnp.abs(blocked[3, :, 6:]).sum() + jnp.abs(blocked[:, 3, 3:6]).sum()) == 0.0


def _models(name, dtype='float64'):
  make = lambda stem_conv: jr.create_model(name, num_classes=5, dtype=dtype,
                                           param_dtype='float64', stem_conv=stem_conv)
  return make('conv'), {option: make(option) for option in OPTIONS}


def _variables(name):
  """The default model's float64 variables (their shapes do not depend on the image size),
  initialised once per module and model (x64 must be on, as in the tests that call this)."""
  if name not in _VARIABLES:
    base = _models(name)[0]
    x = jnp.zeros((1, 32, 32, 3), jnp.float64)
    _VARIABLES[name] = jax.jit(lambda: base.init(jax.random.key(1), x, train=False))()
  return _VARIABLES[name]


_VARIABLES = {}


def _apply(model, variables, x):
  return jax.jit(lambda v: model.apply(v, x, train=False))(variables)


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_options_have_the_default_parameter_tree(x64, name):
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float64)
  base, options = _models(name)
  expected = jax.eval_shape(lambda x: base.init(jax.random.key(1), x, train=False), x)
  assert expected['params']['conv_init']['kernel'].shape == (7, 7, 3, 64)
  for option, model in options.items():
    own = jax.eval_shape(lambda x, model=model: model.init(jax.random.key(1), x, train=False), x)
    assert jax.tree.structure(own) == jax.tree.structure(expected), option
    assert jax.tree.leaves(own) == jax.tree.leaves(expected), option  # shapes and dtypes


def test_stem_conv_initialises_and_reads_nn_conv_weights(x64):
  """Same name, shape and initialiser as `nn.Conv`: the same initial values from one key."""
  x = _image((2, 12, 12, 3), jnp.float64)
  conv = nn.Conv(8, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                 kernel_init=stems.he_normal_fan_out, param_dtype=jnp.float64)
  variables = conv.init(jax.random.key(1), x)
  expected = conv.apply(variables, x)
  for option in OPTIONS:
    layer = stems.StemConv(8, (7, 7), (2, 2), option, param_dtype=jnp.float64)
    own = layer.init(jax.random.key(1), x)
    assert jax.tree.structure(own) == jax.tree.structure(variables)
    np.testing.assert_array_equal(own['params']['kernel'], variables['params']['kernel'])
    out = layer.apply(variables, x)
    assert out.shape == (2, 6, 6, 8)
    assert _relative_error(out, expected) < F64_RTOL, option


def test_train_mode_loss_gradients_and_statistics_equal_in_float64(x64):
  """48x48, not 32x32: at 32x32 stage 4's batch statistics are over two values per channel
  (1x1 maps of two images), where BatchNorm's gradient amplifies round-off by orders of
  magnitude; 2x2 maps keep it a comparison of round-off."""
  x = _image((2, 48, 48, 3), jnp.float64)
  base, options = _models('resnet18')
  variables = _variables('resnet18')

  def run(model):
    def loss(params):
      logits, stats = model.apply({**variables, 'params': params}, x, train=True,
                                  mutable=['batch_stats'])
      return jnp.sum(logits ** 2), (logits, stats)
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables['params'])

  (loss, (logits, stats)), grads = run(base)
  for option, model in options.items():
    (own_loss, (own_logits, own_stats)), own_grads = run(model)
    errors = [_relative_error(own_loss, loss), _relative_error(own_logits, logits),
              *_tree_relative_errors(own_stats, stats), *_tree_relative_errors(own_grads, grads)]
    assert max(errors) < F64_RTOL, option


def test_resnet50_eval_outputs_equal_in_float64(x64):
  x = _image((2, 32, 32, 3), jnp.float64)
  base, options = _models('resnet50')
  variables = _variables('resnet50')
  expected = _apply(base, variables, x)
  for option, model in options.items():
    out = _apply(model, variables, x)
    assert out.dtype == jnp.float64 and out.shape == (2, 5)
    assert _relative_error(out, expected) < F64_RTOL, option


def test_odd_size_outputs_and_jvp_equal_in_float64(x64):
  """A 33x31 image (the stem's blocks need one more zero row and column) and forward-mode
  differentiation through the rearranged kernel and the blocked input."""
  x = _image((2, 33, 31, 3), jnp.float64)
  tangent = jax.random.normal(jax.random.key(2), x.shape, jnp.float64)
  base, options = _models('resnet18')
  variables = _variables('resnet18')
  jvp = lambda model: jax.jit(lambda: jax.jvp(
      lambda image: model.apply(variables, image, train=False), (x,), (tangent,)))()
  expected_out, expected_tangent = jvp(base)
  for option, model in options.items():
    out, out_tangent = jvp(model)
    assert out.dtype == jnp.float64 and out.shape == (2, 5)
    assert _relative_error(out, expected_out) < F64_RTOL, option
    assert _relative_error(out_tangent, expected_tangent) < F64_RTOL, option


def test_float32_and_bfloat16_within_the_defaults_own_round_off(x64):
  """The tolerance is measured, not assumed: the default model's own error in each dtype
  against float64 on the same input and weights. An option computes the same sums in another
  order, so its error is of that size, and it differs from the default by at most the sum of
  the two errors (4x leaves margin)."""
  x = _image((2, 32, 32, 3), jnp.float64)
  reference_model, _ = _models('resnet18')
  variables = _variables('resnet18')
  reference = np.asarray(_apply(reference_model, variables, x))
  for dtype in ('float32', 'bfloat16'):
    base, options = _models('resnet18', dtype=dtype)
    default_out = _apply(base, variables, x)
    assert default_out.dtype == jnp.dtype(dtype)
    default_out = np.asarray(default_out, np.float64)
    own_error = np.max(np.abs(default_out - reference))
    eps = float(jnp.finfo(dtype).eps)
    assert 0 < own_error < 1e3 * eps * np.max(np.abs(reference))  # round-off, not a bug
    for option, model in options.items():
      out = _apply(model, variables, x)
      assert out.dtype == jnp.dtype(dtype)
      difference = np.max(np.abs(np.asarray(out, np.float64) - default_out))
      assert difference <= 4 * own_error, (dtype, option, difference, own_error)



def test_bad_values_are_one_clear_error():
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError) as err:
    jr.create_model('resnet18', stem_conv='s2d')
  assert str(err.value) == ("resnet18: stem_conv must be 'conv', 'pad_channels' or "
                            "'space_to_depth', got 's2d'.")
  with pytest.raises(ValueError) as err:
    jr.create_model('resnet20', stem_conv='space_to_depth')
  assert str(err.value) == ("resnet20: stem_conv='space_to_depth' applies to the 7x7/2 stems "
                            "('imagenet', 'bit') only; this model's stem is 'cifar' (leave "
                            "stem_conv='conv').")
  with pytest.raises(ValueError) as err:  # ResNet-D's deep 3x3 stem has no 7x7 either
    jr.create_model('resnet50d', stem_conv='pad_channels')
  assert str(err.value) == ("resnet50d: stem_conv='pad_channels' applies to the 7x7/2 stems "
                            "('imagenet', 'bit') only; this model's stem is 'deep' (leave "
                            "stem_conv='conv').")
  with pytest.raises(ValueError) as err:  # the module itself, built without the registry
    jr.ResNet((1, 1, 1, 1), stem_conv='space_to_depth', stem='cifar').init(
        jax.random.key(0), x)
  assert str(err.value) == ("stem_conv='space_to_depth' applies to the 7x7/2 stems ('imagenet', "
                            "'bit') only; this model's stem is 'cifar' (leave stem_conv='conv').")
  with pytest.raises(TypeError) as err:
    jr.create_model('r3d_18', stem_conv='pad_channels')
  assert str(err.value).startswith("create_model('r3d_18') got unknown option(s) stem_conv;")
  with pytest.raises(ValueError) as err:
    stems.StemConv(8, (3, 3), (2, 2), 'conv').init(jax.random.key(0), x)
  assert str(err.value) == ("StemConv method must be 'pad_channels' or 'space_to_depth', "
                            "got 'conv'.")


def test_config_key_resolves_per_backend_and_model_and_rejects_other_values():
  backend = jax.default_backend()
  for on, auto in {'cpu': 'conv', 'gpu': 'conv', 'tpu': 'space_to_depth'}.items():
    assert boundary.stem_conv('auto', 'resnet50', on) == auto
    assert boundary.stem_conv('auto', 'resnet20', on) == 'conv'  # CIFAR stem
    assert boundary.stem_conv('auto', 'r3d_18', on) == 'conv'  # video stem
    assert boundary.stem_conv('auto', 'resnet50d', on) == 'conv'  # deep 3x3 stem
    assert boundary.stem_conv('auto', 'bit_resnet50x1', on) == auto  # BiT's 7x7/2
    assert boundary.stem_conv('space_to_depth', 'resnet50', on) == 'space_to_depth'
  config = jr.load_config('default')
  assert config.stem_conv == 'auto'
  config.model, config.image_size, config.stem_conv = 'resnet50', 32, 'space_to_depth'
  assert setup.build_model(resolve(config)).stem_conv == 'space_to_depth'
  config.stem_conv = 'auto'
  assert resolve(config, backend='tpu').model_kwargs['stem_conv'] == 'space_to_depth'
  assert 'stem_conv' not in resolve(config, backend='cpu').model_kwargs  # 'conv': the default
  assert setup.build_model(resolve(config)).stem_conv == boundary.stem_conv('auto', 'resnet50',
                                                                            backend)
  config.model = 'r3d_18'
  assert not hasattr(setup.build_model(resolve(config)), 'stem_conv')
  config.model, config.image_size, config.stem_conv = 'resnet20', 16, 'pad_channels'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == ("Invalid config for model 'resnet20': resnet20: "
                            "stem_conv='pad_channels' applies to the 7x7/2 stems ('imagenet', "
                            "'bit') only; this model's stem is 'cifar' (leave stem_conv='conv').")
  config.stem_conv = 'fast'
  with pytest.raises(ConfigError) as err:
    resolve(config)
  assert str(err.value) == ("Invalid config: stem_conv must be one of 'auto', 'conv', "
                            "'pad_channels', 'space_to_depth', got 'fast'.")


def test_benchmark_flag_is_recorded_in_its_json():
  args = benchmark.parse_args(['--model', 'resnet50', '--stem-conv', 'space_to_depth'])
  assert benchmark.bench_config(args).stem_conv == 'space_to_depth'
  result = benchmark.summarise(args, [0.5], compile_seconds=1.0, flops=None)
  assert result['stem_conv'] == 'space_to_depth'
  args = benchmark.parse_args(['--model', 'resnet20', '--image-size', '32'])
  assert benchmark.summarise(args, [0.5], compile_seconds=1.0, flops=None)['stem_conv'] == 'conv'

