"""Dynamic loss scaling for float16 training (Micikevicius et al. 2018, "Mixed Precision
Training"), with flax's `DynamicScale`: the loss is multiplied by a scale before the backward
pass, so float16 gradients that would underflow to zero stay representable; the gradients are
divided by it again in float32. The scale doubles after `growth_interval` finite steps in a row
and halves on a step whose gradient is not finite, which is then skipped (the parameters,
statistics and optimizer state stay as they were; the step count moves on).

The scale, its run of finite steps and the number of skipped steps are part of the train state
(`TrainState.loss_scale`), so checkpoints hold them and a resumed run continues with the same
scale.
"""

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
from flax.training.dynamic_scale import DynamicScale

INITIAL_SCALE = 2.0 ** 15    # torch's GradScaler starts at 2**16; one halving is cheap
GROWTH_INTERVAL = 2000       # torch's GradScaler and flax's DynamicScale


class LossScale(flax.struct.PyTreeNode):
  dynamic: DynamicScale       # scale and fin_steps (arrays); the factors (static)
  skipped: jax.Array          # steps skipped for a non-finite gradient, over the whole run


def initial(growth_interval: int = GROWTH_INTERVAL, scale: Optional[float] = None) -> LossScale:
  """The state of a run's first step: `scale` (default INITIAL_SCALE), no finite steps yet."""
  scale = INITIAL_SCALE if scale is None else scale
  return LossScale(
      dynamic=DynamicScale(growth_interval=int(growth_interval),
                           fin_steps=jnp.zeros((), jnp.int32),
                           scale=jnp.asarray(scale, jnp.float32)),
      skipped=jnp.zeros((), jnp.int32))


def for_dtype(dtype, growth_interval: int = GROWTH_INTERVAL) -> Optional[LossScale]:
  """The initial LossScale of a model computing in `dtype`: float16 only (bfloat16 has
  float32's exponent range and needs none)."""
  return initial(growth_interval) if jnp.dtype(dtype) == jnp.float16 else None


def value_and_grad(loss_fn, loss_scale: LossScale, axis_name=None):
  """Like `jax.value_and_grad(loss_fn, has_aux=True)`, the gradients averaged over
  `axis_name` before the finiteness test (every replica decides the same). Returns a function
  giving ((loss, aux), grads, the next LossScale, whether the gradients are finite)."""
  grad_fn = loss_scale.dynamic.value_and_grad(loss_fn, has_aux=True, axis_name=axis_name)

  def run(*args):
    dynamic, finite, (loss, aux), grads = grad_fn(*args)
    return (loss, aux), grads, loss_scale.replace(dynamic=dynamic), finite

  return run


def count_skip(loss_scale: LossScale, applied) -> LossScale:
  """`loss_scale` with one more skipped step unless the step's update was `applied`."""
  return loss_scale.replace(skipped=loss_scale.skipped + (~applied).astype(jnp.int32))


def summary(loss_scale: Optional[LossScale]) -> dict:
  """What summary.json says about loss scaling (nothing without it)."""
  if loss_scale is None:
    return {}
  return {'loss_scale': float(loss_scale.dynamic.scale),
          'loss_scale_finite_steps': int(loss_scale.dynamic.fin_steps),
          'loss_scale_skipped_steps': int(loss_scale.skipped)}
