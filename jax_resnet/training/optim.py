"""Optimizers and learning-rate schedules from plain values, bound into the step once."""

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jax_resnet import finetune
from jax_resnet.errors import TrainingError, check_choice

OPTIMIZERS = ('sgd', 'adamw', 'lars')
SCHEDULES = ('constant', 'step', 'cosine')
WEIGHT_DECAY_MODES = ('l2', 'decoupled')


def check_optimizer(name: str):
  """make_optimizer's name, checked without building anything (TrainingError, with choices)."""
  check_choice(TrainingError, 'optimizer', name, OPTIMIZERS)


def check_weight_decay_mode(mode: str):
  """make_optimizer's weight_decay_mode (TrainingError, with choices)."""
  check_choice(TrainingError, 'weight_decay_mode', mode, WEIGHT_DECAY_MODES)


def check_schedule(kind: str):
  """make_schedule's kind, checked without building anything (TrainingError, with choices)."""
  check_choice(TrainingError, 'schedule kind', kind, SCHEDULES)


def make_schedule(kind: str, peak_learning_rate: float, total_steps: int, warmup_steps: int = 0,
                  boundaries: Sequence[int] = (), decay_factor: float = 0.1):
  """step -> learning rate: linear warmup from 0, then 'constant', 'step' (times decay_factor
  at each boundary step) or 'cosine' (to 0 at total_steps)."""
  check_schedule(kind)
  peak = peak_learning_rate
  if kind == 'constant':
    main = optax.constant_schedule(peak)
  elif kind == 'step':
    main = optax.piecewise_constant_schedule(
        peak, {b - warmup_steps: decay_factor for b in boundaries})
  else:  # 'cosine'
    main = optax.cosine_decay_schedule(peak, max(1, total_steps - warmup_steps))
  if warmup_steps > 0:
    main = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), main],
                                [warmup_steps])
  # The step as JAX's default float: optax divides integer counts in float32, which would
  # round a float64 run's learning rate to float32.
  return lambda step: main(jnp.asarray(step, float))


def _kernels_only(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(name: str = 'sgd', momentum: float = 0.9, nesterov: bool = False,
                   weight_decay: float = 0.0, weight_decay_mode: str = 'l2',
                   decay_bn_and_bias: bool = True, trainable: finetune.Trainable = 'all'):
  """An optax transformation whose learning rate is an injected hyperparameter, so the step
  sets it each iteration from the schedule (and from the ResNet-110 warmup rule).

  weight_decay_mode 'l2' adds wd * p to the gradient before momentum (torch's SGD); 'decoupled'
  subtracts lr * wd * p from the update (Loshchilov & Hutter 2019). decay_bn_and_bias=False
  decays kernels only. `trainable` ('all', 'head', path prefixes: jax_resnet.finetune) leaves
  the other parameters without update and without weight decay."""
  mask = None if decay_bn_and_bias else _kernels_only
  wd, mode = weight_decay, weight_decay_mode
  check_weight_decay_mode(mode)
  check_optimizer(name)

  finetune.prefixes(trainable)  # a bad value fails here, before anything is built

  def build(learning_rate):
    return finetune.optimizer(_base_optimizer(learning_rate), trainable)

  def _base_optimizer(learning_rate):
    if name == 'lars':
      return optax.lars(learning_rate, weight_decay=wd, weight_decay_mask=mask or True,
                        trust_ratio_mask=mask or True, momentum=momentum, nesterov=nesterov)
    if name == 'sgd':
      base = optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)
    else:
      base = optax.adamw(learning_rate, b1=momentum,
                         weight_decay=wd if mode == 'decoupled' else 0.0, mask=mask)
    if mode == 'l2' and wd > 0:  # torch-style L2: wd * p joins the gradient before momentum
      return optax.chain(optax.add_decayed_weights(wd, mask), base)
    if mode == 'decoupled' and wd > 0 and name == 'sgd':
      return optax.chain(base, optax.add_decayed_weights(-wd * learning_rate, mask))
    return base

  return optax.inject_hyperparams(build)(learning_rate=0.0)


def set_learning_rate(opt_state, learning_rate):
  hyper = dict(opt_state.hyperparams)
  hyper['learning_rate'] = jnp.asarray(learning_rate, hyper['learning_rate'].dtype)
  return opt_state._replace(hyperparams=hyper)
