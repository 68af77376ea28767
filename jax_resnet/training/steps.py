"""The pure train and eval steps: `train_step(state, batch, rng) -> (state, metrics)`.

Parallelism is not in here: a wrapper (parallel.py) maps the step over devices and names the
axis, and the step only reduces over `axis_name` when it is given.
"""

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jax_resnet.training.optim import set_learning_rate


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any           # None unless config.ema_decay > 0
  warming_up: jax.Array     # He et al. 2015 ResNet-110 rule: hold warmup_lr until error < t


def create_train_state(config, model, tx, rng, image_shape):
  """Initial state; call under jit (or jax.eval_shape to learn shapes without allocating)."""
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = model.init(rng, x, train=False)
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
      ema_params=params if config.ema_decay > 0 else None,
      warming_up=jnp.asarray(config.warmup_lr > 0))


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing) \
      if label_smoothing else jax.nn.one_hot(labels, num_classes)
  # The loss in float32 at least (bfloat16 logits), in float64 when the model computes in it.
  logits = logits.astype(jnp.promote_types(jnp.float32, logits.dtype))
  return optax.softmax_cross_entropy(logits, targets)


def _pmean(tree, axis_name):
  return jax.lax.pmean(tree, axis_name) if axis_name else tree


def make_train_step(config, model, tx, schedule, axis_name: Optional[str] = None):
  """Binds model, optimizer, schedule and loss; returns the pure per-replica step."""

  def loss_fn(params, state, batch, rng):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': rng})
    loss = jnp.mean(cross_entropy(logits, batch['label'], config.num_classes,
                                  config.label_smoothing))
    return loss, (logits, updates['batch_stats'])

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    if axis_name:
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.params, state, batch, rng)
    grads = _pmean(grads, axis_name)
    # Without cross-replica BN each replica has its own statistics; average them (Flax example).
    # (Synced or frozen statistics are equal on every replica already: left bit-exact.)
    if not (config.sync_batch_norm or config.freeze_batch_norm):
      batch_stats = _pmean(batch_stats, axis_name)
    error = jnp.mean(jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32)
    metrics = _pmean({'loss': loss, 'error': error}, axis_name)
    lr = jnp.where(state.warming_up, config.warmup_lr, schedule(state.step))
    opt_state = set_learning_rate(state.opt_state, lr)
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(metrics['loss'])
    for g in jax.tree.leaves(grads):
      finite &= jnp.all(jnp.isfinite(g))
    ema = state.ema_params
    if ema is not None:
      ema = jax.tree.map(lambda e, p: config.ema_decay * e + (1 - config.ema_decay) * p,
                         ema, params)
    still_warming = state.warming_up & (metrics['error'] >= config.warmup_until_error)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
        ema_params=ema, warming_up=still_warming)
    if config.skip_nonfinite_updates:  # keep the old weights; only the step count moves on
      kept = state.replace(step=new_state.step)
      new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)
    metrics.update(learning_rate=lr, grads_finite=finite.astype(jnp.float32))
    return new_state, metrics

  return train_step


def make_eval_step(config, model, axis_name: Optional[str] = None):
  """Masked sums over a padded eval batch: exact counts over the whole split."""

  def eval_step(state, batch):
    params = state.ema_params if state.ema_params is not None else state.params
    logits = model.apply({'params': params, 'batch_stats': state.batch_stats},
                         batch['image'], train=False)
    mask = batch['mask'].astype(jnp.float32)
    loss = cross_entropy(logits, batch['label'], config.num_classes, 0.0)
    correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    sums = {'loss_sum': jnp.sum(loss * mask), 'correct': jnp.sum(correct * mask),
            'count': jnp.sum(mask)}
    return jax.lax.psum(sums, axis_name) if axis_name else sums

  return eval_step

