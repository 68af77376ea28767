"""Property-based checks of the weight converter: any missing, extra or mis-shaped tensor is
one WeightsMismatchError that names it; an intact state dict always converts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jax_resnet as jr
from jax_resnet import weights


@functools.lru_cache(maxsize=None)
def _state_dict(name):
  model = jr.create_model(name)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                             train=False))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  return weights.to_torchvision(name, variables)


NAMES = ('resnet18', 'resnet50')
FAST = settings(max_examples=30, deadline=None)


@FAST
@given(st.sampled_from(NAMES), st.data())
def test_a_missing_tensor_is_named(name, data):
  sd = dict(_state_dict(name))
  key = data.draw(st.sampled_from(sorted(k for k in sd if 'num_batches' not in k)))
  del sd[key]
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.from_torchvision(name, sd)
  assert 'missing 1: ' in str(err.value) and key in str(err.value)


@FAST
@given(st.sampled_from(NAMES), st.data(), st.integers(min_value=1, max_value=7))
def test_a_misshaped_tensor_is_named_with_both_shapes(name, data, extra):
  sd = dict(_state_dict(name))
  key = data.draw(st.sampled_from(sorted(k for k in sd if sd[k].ndim >= 1)))
  shape = list(sd[key].shape)
  shape[0] += extra
  sd[key] = np.zeros(shape, np.float32)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.from_torchvision(name, sd, num_classes=1000)
  message = str(err.value)
  assert key in message and str(tuple(shape)) in message


@FAST
@given(st.sampled_from(NAMES), st.text(alphabet='abcxyz._', min_size=3, max_size=12))
def test_an_unexpected_tensor_is_named(name, suffix):
  sd = dict(_state_dict(name))
  key = f'extra.{suffix}'
  sd[key] = np.zeros(3, np.float32)
  with pytest.raises(weights.WeightsMismatchError) as err:
    weights.from_torchvision(name, sd)
  assert 'unexpected 1: ' in str(err.value) and key in str(err.value)


@pytest.mark.parametrize('name', NAMES)
def test_an_intact_state_dict_round_trips(name):
  sd = _state_dict(name)
  back = weights.to_torchvision(name, weights.from_torchvision(name, sd))
  assert list(back) == list(sd)
  assert all(back[k].shape == sd[k].shape for k in sd)
