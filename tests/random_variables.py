"""Variables of any registered model drawn by numpy from their shapes (`jax.eval_shape` of its
init, nothing compiled): cheap stand-ins for trained weights of full-size models."""

import jax
import numpy as np

from jax_resnet.weights.trees import flatten, unflatten


def random_variables(model, side: int, seed: int) -> dict:
  """Variables of `model` drawn by numpy from their shapes: kernels at He scale, norm scales
  in [0.1, 0.3] (so that residual sums stay near the input's scale in eval mode, where running
  statistics do not normalise), biases and shifts in [-0.2, 0.2], running variances in
  [0.5, 1.5]; every array non-trivial, so a misplaced one changes the logits."""
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), np.zeros((1, side, side, 3), np.float32), train=False))
  rng = np.random.default_rng(seed)
  out = {}
  for name, leaf in flatten(shapes).items():
    shape, last = leaf.shape, name.rsplit('/', 1)[-1]
    if last == 'kernel':
      fan_in = int(np.prod(shape[:-1]))
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif last == 'scale':
      value = rng.uniform(0.1, 0.3, shape)
    elif last == 'var':
      value = rng.uniform(0.5, 1.5, shape)
    else:  # biases, BatchNorm/GroupNorm shifts, running means
      value = rng.uniform(-0.2, 0.2, shape)
    out[name] = value.astype(np.float32)
  return unflatten(out)
