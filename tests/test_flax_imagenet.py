"""The Flax ImageNet example's models and checkpoints in jax_resnet: padding='same' reproduces
its model (tests/flax_imagenet_reference.py), `weights.from_flax_imagenet` maps its variables
and `weights.load` reads the checkpoints its train.py writes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training import checkpoints, train_state

import jax_resnet as jr
from jax_resnet import weights
from jax_resnet.layers import xla_same_pads
from jax_resnet.weights import flax_imagenet
from jax_resnet.weights.trees import flatten
from flax_imagenet_reference import example_model

NUM_CLASSES = 10
IMAGE = (2, 64, 64, 3)  # even sizes at every strided layer, where the two paddings differ


@pytest.mark.parametrize('size, window, stride', [(8, 3, 2), (7, 3, 2), (8, 7, 2), (9, 1, 2),
                                                  (5, 3, 1), (6, 2, 2), (1, 3, 2)])
def test_xla_same_pads_are_xlas(size, window, stride):
  want = jax.lax.padtype_to_pads((size,), (window,), (stride,), 'SAME')
  assert xla_same_pads((size,), (window,), (stride,)) == [tuple(want[0])]


def test_padding_option_is_checked():
  with pytest.raises(ValueError) as error:
    jr.create_model('resnet50', padding='valid')
  assert str(error.value) == "resnet50: padding must be 'torch' or 'same', got 'valid'."
  with pytest.raises(ValueError) as error:
    jr.create_model('resnet20', padding='same')
  assert str(error.value) == (
      "resnet20: padding='same' applies to the ImageNet-style stems ('imagenet', 'deep', "
      "'bit') only; this model's stem is 'cifar' (leave padding='torch').")
  with pytest.raises(TypeError, match='unknown option'):
    jr.create_model('r3d_18', padding='same')


@pytest.mark.parametrize('name', ['resnet50', 'resnet18d', 'bit_resnet50x1'])
def test_same_padding_keeps_parameters_and_shapes(name):
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  shapes = [jax.eval_shape(jr.create_model(name, padding=padding).init, jax.random.key(0), x)
            for padding in ('torch', 'same')]
  assert jax.tree.map(lambda s: s.shape, shapes[0]) == jax.tree.map(lambda s: s.shape, shapes[1])


def _randomised(variables, seed=0):
  """The reference's variables with random values of a fitting scale: kernels with variance
  1/fan_in, scales and variances in [0.5, 1.5], biases and means around 0."""
  rng = np.random.default_rng(seed)

  def value(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, fan_in ** -0.5, leaf.shape)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape)
    return rng.normal(0, 0.1, leaf.shape)

  return jax.tree_util.tree_map_with_path(value, variables)


@pytest.fixture(scope='module')
def example_variables():
  """name -> the example's randomised variables (float64 numpy) for a 10-class head."""
  x = jax.ShapeDtypeStruct(IMAGE, jnp.float32)
  out = {}
  for name in ('resnet18', 'resnet50'):
    shapes = jax.eval_shape(example_model(name, NUM_CLASSES).init, jax.random.key(0), x)
    out[name] = _randomised(shapes, seed=len(out))
  return out


def _logits(name, variables, dtype, padding='same'):
  """(the reference's logits, ours) in `dtype` on one random image batch."""
  cast = lambda tree: jax.tree.map(lambda v: jnp.asarray(v, dtype), tree)
  ours = weights.from_flax_imagenet(name, variables)
  x = jax.random.normal(jax.random.key(3), IMAGE, dtype)
  reference = example_model(name, NUM_CLASSES, dtype=dtype, param_dtype=dtype)
  model = jr.create_model(name, num_classes=NUM_CLASSES, padding=padding, dtype=dtype,
                          param_dtype=dtype)
  want = jax.jit(lambda v, x: reference.apply(v, x, train=False))(cast(variables), x)
  got = jax.jit(lambda v, x: model.apply(v, x, train=False))(cast(ours), x)
  return np.asarray(want), np.asarray(got)


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_logits_equal_the_examples_in_float64(x64, example_variables, name):
  want, got = _logits(name, example_variables[name], jnp.float64)
  assert got.dtype == np.float64 and np.max(np.abs(want)) > 0.1
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
def test_logits_equal_the_examples_in_float32(example_variables, name):
  want, got = _logits(name, example_variables[name], jnp.float32)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_torch_padding_does_not_reproduce_the_example(example_variables):
  want, got = _logits('resnet18', example_variables['resnet18'], jnp.float32, padding='torch')
  assert np.max(np.abs(got - want)) > 1e-3


@pytest.mark.parametrize('name', ['resnet34', 'resnet101', 'resnet152', 'resnet200'])
def test_deeper_models_map_every_name_and_shape(name):
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  shapes = flatten(jax.eval_shape(example_model(name).init, jax.random.key(0), x))
  names = flax_imagenet.example_names(name)
  assert sorted(names) == sorted(shapes)
  assert all(names[n][1].shape == shapes[n].shape for n in names)
  assert len({ours for ours, _ in names.values()}) == len(names)


def test_mismatches_are_listed_in_the_examples_names(example_variables):
  with pytest.raises(weights.WeightsMismatchError) as error:
    weights.from_flax_imagenet('resnet34', example_variables['resnet18'])
  message = str(error.value)
  assert message.startswith("variables: not the Flax ImageNet example's resnet34")
  expected = set(flax_imagenet.example_names('resnet34', NUM_CLASSES))
  given = set(flatten(example_variables['resnet18']))
  assert f'missing {len(expected - given)}: ' in message
  assert f'unexpected {len(given - expected)}: ' in message
  with pytest.raises(weights.WeightsError) as error:
    weights.from_flax_imagenet('resnet50d', example_variables['resnet50'])
  assert str(error.value).startswith('resnet50d has no counterpart in the Flax ImageNet example')


class ExampleTrainState(train_state.TrainState):
  """The example's TrainState: the optimiser's state, batch statistics and a loss scale."""
  batch_stats: dict
  dynamic_scale: object = None


def test_load_reads_the_examples_checkpoint_directory(tmp_path, example_variables):
  import optax
  variables = jax.tree.map(lambda v: np.asarray(v, np.float32), example_variables['resnet18'])
  state = ExampleTrainState.create(apply_fn=None, params=variables['params'],
                                   tx=optax.sgd(0.1, momentum=0.9, nesterov=True),
                                   batch_stats=variables['batch_stats'])
  workdir = str(tmp_path / 'workdir')
  for step in (10, 20):  # the newest is read
    scaled = jax.tree.map(lambda p, factor=step: p * factor, state.params)
    state = state.replace(step=step, params=scaled)
    checkpoints.save_checkpoint_multiprocess(workdir, jax.device_get(state), step, keep=3)
  want = weights.from_flax_imagenet('resnet18', state)
  for path in (workdir, f'{workdir}/checkpoint_20'):
    got = weights.load('resnet18', path)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(weights.WeightsMismatchError) as error:
    weights.load('resnet34', workdir)
  assert str(error.value).startswith(
      f"{workdir}: not the Flax ImageNet example's resnet34")
