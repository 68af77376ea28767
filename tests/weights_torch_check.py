"""Shared by the torch equivalence tests: a random torchvision model (BN running statistics and
affine randomised), its logits and stage outputs, and ours from the converted weights, run as one
compiled program (tests/compiled.py)."""

import jax
import numpy as np
import torch
import torchvision

import compiled
import jax_resnet as jr
from jax_resnet import weights

# float64: both sides compute the same maths, so they agree near round-off on any CPU. float32:
# a wide margin over the largest error measured (docs/weights.md), for other CPUs' summation
# order.
TOLERANCE = {'float64': 1e-10, 'float32': 1e-4}


def torchvision_model(name: str, seed: int = 0):
  torch.manual_seed(seed)
  family = torchvision.models.video if name in weights.VIDEO_MODELS else torchvision.models
  model = getattr(family, name)(weights=None).eval()
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        module.running_mean.normal_(0.0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
  return model


def small_input(name: str, seed: int = 0, dtype: str = 'float32') -> np.ndarray:
  """Channels-last: 1x64x64x3 images, 1x4x32x32x3 clips."""
  shape = (1, 4, 32, 32, 3) if name in weights.VIDEO_MODELS else (1, 64, 64, 3)
  return np.random.RandomState(seed).standard_normal(shape).astype(dtype)


def torch_outputs(model, x: np.ndarray) -> dict:
  """'logits' and 'stage1'..'stage4' (layer1..4 outputs), channels moved last."""
  outputs = {}
  hooks = [getattr(model, f'layer{i}').register_forward_hook(
      lambda module, args, out, key=f'stage{i}': outputs.__setitem__(key, out))
      for i in range(1, 5)]
  try:
    with torch.no_grad():
      outputs['logits'] = model(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))
  finally:
    for hook in hooks:
      hook.remove()
  return {k: np.moveaxis(v.numpy(), 1, -1) for k, v in outputs.items()}


def relative_errors(name: str, model, seed: int = 0, dtype: str = 'float32') -> dict:
  """max |ours - torchvision| / max |torchvision| for the logits and every stage, both sides
  computing in `dtype` (float64 needs jax_enable_x64: the tests' x64 fixture)."""
  x = small_input(name, seed, dtype)
  state_dict = model.state_dict()
  theirs = torch_outputs(model.to(getattr(torch, dtype)), x)
  variables = jax.tree.map(lambda a: np.asarray(a, dtype),
                           weights.from_torchvision(name, state_dict))
  ours = compiled.apply(jr.create_model(name, dtype=dtype, param_dtype=dtype), variables, x,
                        train=False, return_features=True)
  return {k: float(np.abs(np.asarray(ours[k]) - v).max() / np.abs(v).max())
          for k, v in theirs.items()}


def assert_round_trip_exact(name: str, state_dict):
  """to_torchvision(from_torchvision(sd)) gives back the same names, order, dtypes, values."""
  back = weights.to_torchvision(name, weights.from_torchvision(name, state_dict))
  assert list(back) == list(state_dict)
  for key, tensor in state_dict.items():
    expected = tensor.numpy()
    assert back[key].dtype == expected.dtype and back[key].shape == expected.shape, key
    assert np.array_equal(back[key], expected), key


def check_model(name: str, dtype: str = 'float32'):
  """Logits and stage features within TOLERANCE[dtype], exact round trip; returns the errors."""
  model = torchvision_model(name)
  assert_round_trip_exact(name, model.state_dict())
  errors = relative_errors(name, model, dtype=dtype)
  assert set(errors) == {'logits', 'stage1', 'stage2', 'stage3', 'stage4'}
  assert max(errors.values()) <= TOLERANCE[dtype], errors
  return errors
