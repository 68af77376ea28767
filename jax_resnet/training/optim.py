"""Optimizers and learning-rate schedules, built from the config once, bound into the step."""

import jax
import jax.numpy as jnp
import optax

from jax_resnet.errors import ConfigError


def peak_learning_rate(config) -> float:
  """`learning_rate`, linearly scaled by batch_size / lr_batch_base when that is set
  (Goyal et al. 2017: lr 0.1 x batch/256 for ImageNet)."""
  lr = config.learning_rate
  if config.lr_batch_base > 0:
    lr *= config.batch_size / config.lr_batch_base
  return lr


def _boundaries(config, total_steps):
  return [int(b * total_steps) if b < 1 else int(b) for b in config.lr_boundaries]


def make_schedule(config, steps_per_epoch: int, total_steps: int):
  """step -> learning rate: linear warmup, then constant, step decay or cosine."""
  peak = peak_learning_rate(config)
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  if config.lr_schedule == 'constant':
    main = optax.constant_schedule(peak)
  elif config.lr_schedule == 'step':
    main = optax.piecewise_constant_schedule(
        peak, {b - warmup: config.lr_decay_factor for b in _boundaries(config, total_steps)})
  elif config.lr_schedule == 'cosine':
    main = optax.cosine_decay_schedule(peak, max(1, total_steps - warmup))
  else:
    raise ConfigError(f"lr_schedule must be 'constant', 'step' or 'cosine', got "
                      f'{config.lr_schedule!r}.')
  if warmup > 0:
    main = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])
  # The step as JAX's default float: optax divides integer counts in float32, which would
  # round a float64 run's learning rate to float32.
  return lambda step: main(jnp.asarray(step, float))


def decay_mask(config):
  """Which parameters get weight decay: all, or (decay_bn_and_bias=False) kernels only."""
  if config.decay_bn_and_bias:
    return None
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config):
  """An optax transformation whose learning rate is an injected hyperparameter, so the step
  sets it each iteration from the schedule (and from the ResNet-110 warmup rule)."""
  mask = decay_mask(config)
  wd, mode = config.weight_decay, config.weight_decay_mode
  if mode not in ('l2', 'decoupled'):
    raise ConfigError(f"weight_decay_mode must be 'l2' or 'decoupled', got {mode!r}.")

  def build(learning_rate):
    if config.optimizer == 'sgd':
      base = optax.sgd(learning_rate, momentum=config.momentum or None, nesterov=config.nesterov)
    elif config.optimizer == 'adamw':
      base = optax.adamw(learning_rate, b1=config.momentum,
                         weight_decay=wd if mode == 'decoupled' else 0.0, mask=mask)
    elif config.optimizer == 'lars':
      return optax.lars(learning_rate, weight_decay=wd, weight_decay_mask=mask or True,
                        trust_ratio_mask=mask or True, momentum=config.momentum,
                        nesterov=config.nesterov)
    else:
      raise ConfigError(f"optimizer must be 'sgd', 'adamw' or 'lars', got {config.optimizer!r}.")
    if mode == 'l2' and wd > 0:  # torch-style L2: wd * p joins the gradient before momentum
      return optax.chain(optax.add_decayed_weights(wd, mask), base)
    if mode == 'decoupled' and wd > 0 and config.optimizer == 'sgd':
      return optax.chain(base, optax.add_decayed_weights(-wd * learning_rate, mask))
    return base

  return optax.inject_hyperparams(build)(learning_rate=0.0)


def set_learning_rate(opt_state, learning_rate):
  hyper = dict(opt_state.hyperparams)
  hyper['learning_rate'] = jnp.asarray(learning_rate, hyper['learning_rate'].dtype)
  return opt_state._replace(hyperparams=hyper)
