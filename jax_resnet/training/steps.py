"""The pure train and eval steps: `train_step(state, batch, rng) -> (state, metrics)`.

Parallelism is not in here: a wrapper (parallel.py) maps the step over devices and names the
axis, and the step only reduces over `axis_name` when it is given.
"""

from typing import Any, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jax_resnet import finetune
from jax_resnet.training import loss_scale as scaling
from jax_resnet.training.optim import set_learning_rate


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any           # None unless the step keeps an EMA of the weights
  warming_up: jax.Array     # He et al. 2015 ResNet-110 rule: hold warmup_lr until error < t
  loss_scale: Any = None    # float16: loss_scale.LossScale (dynamic loss scaling)


def create_train_state(model, tx, rng, input_shape, ema: bool = False,
                       warming_up: bool = False, loss_scale=None):
  """Initial state for inputs of `input_shape` (one example, e.g. (32, 32, 3)); call under jit
  (or jax.eval_shape to learn shapes without allocating). `ema` keeps a copy of the weights
  for make_train_step's ema_decay; `warming_up` starts under its warmup_lr rule; `loss_scale`
  (`loss_scale.initial()`, float16 models) makes the step scale its loss dynamically."""
  x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = model.init(rng, x, train=False)
  params = variables['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
      ema_params=params if ema else None, warming_up=jnp.asarray(warming_up),
      loss_scale=loss_scale)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Per-example cross-entropy of integer labels, in float32 at least (bfloat16 logits) and in
  float64 when the model computes in it."""
  logits = logits.astype(jnp.promote_types(jnp.float32, logits.dtype))
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, label_smoothing))


def _pmean(tree, axis_name):
  return jax.lax.pmean(tree, axis_name) if axis_name else tree


def make_train_step(model, tx, schedule, label_smoothing: float = 0.0, ema_decay: float = 0.0,
                    warmup_lr: float = 0.0, warmup_until_error: float = 0.8,
                    skip_nonfinite_updates: bool = False, axis_name: Optional[str] = None,
                    trainable: finetune.Trainable = 'all'):
  """Binds model, optimizer (make_optimizer's, whose learning rate the step sets), schedule
  (step -> rate) and loss; returns the pure per-replica `train_step(state, batch, rng)`.

  ema_decay > 0 needs a state made with ema=True; warmup_lr applies while state.warming_up
  (He et al. 2015's ResNet-110 warmup); skip_nonfinite_updates keeps the old state when the
  loss, a gradient or any array of the new state is not finite (else the step applies them and
  reports grads_finite=0). A state with a `loss_scale` scales the loss dynamically
  (training.loss_scale) and always skips such steps.
  With `axis_name` the step averages gradients and metrics over that device axis.
  `trainable` (jax_resnet.finetune; the optimizer leaves the other parameters alone) keeps
  the BatchNorm statistics of the frozen modules as they were."""
  # Per-replica BN statistics (no bn_axis_name) differ between replicas: average them, as the
  # Flax ImageNet example does. Synced or frozen statistics are equal already: left bit-exact.
  average_batch_stats = (axis_name is not None and getattr(model, 'bn_axis_name', None) is None
                         and not getattr(model, 'freeze_batch_norm', False))

  def loss_fn(params, state, batch, rng):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
        mutable=['batch_stats'], rngs={'dropout': rng})
    loss = jnp.mean(cross_entropy(logits, batch['label'], label_smoothing))
    return loss, (logits, updates.get('batch_stats', {}))  # GroupNorm nets keep none

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    if axis_name:
      rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    (loss, (logits, batch_stats)), grads, loss_scale = _gradients(
        loss_fn, state, batch, rng, axis_name)
    if average_batch_stats:
      batch_stats = _pmean(batch_stats, axis_name)
    batch_stats = finetune.keep_frozen(state.batch_stats, batch_stats, trainable)
    error = jnp.mean(jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32)
    metrics = _pmean({'loss': loss, 'error': error}, axis_name)
    lr = jnp.where(state.warming_up, warmup_lr, schedule(state.step))
    opt_state = set_learning_rate(state.opt_state, lr)
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
    finite = jnp.isfinite(metrics['loss'])
    # Finite gradients can still overflow the weights, BatchNorm's running statistics, the
    # optimizer's moments or the EMA (a huge learning rate): the whole new state is checked.
    for leaf in jax.tree.leaves((grads, params, batch_stats, opt_state, ema)):
      if jnp.issubdtype(leaf.dtype, jnp.inexact):
        finite &= jnp.all(jnp.isfinite(leaf))
    still_warming = state.warming_up & (metrics['error'] >= warmup_until_error)
    if loss_scale is not None:
      loss_scale = scaling.count_skip(loss_scale, finite)
      metrics['loss_scale'] = loss_scale.dynamic.scale
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
        ema_params=ema, warming_up=still_warming, loss_scale=loss_scale)
    if skip_nonfinite_updates or loss_scale is not None:  # keep the old weights; only the
      kept = state.replace(step=new_state.step, loss_scale=loss_scale)  # count, scale move on
      new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)
    metrics.update(learning_rate=lr, grads_finite=finite.astype(jnp.float32))
    return new_state, metrics

  return train_step


def _gradients(loss_fn, state, batch, rng, axis_name):
  """((loss, aux), gradients averaged over `axis_name`, the state's next LossScale or None);
  the loss scaled dynamically when the state has a LossScale."""
  if state.loss_scale is None:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    value, grads = grad_fn(state.params, state, batch, rng)
    return value, _pmean(grads, axis_name), None
  grad_fn = scaling.value_and_grad(loss_fn, state.loss_scale, axis_name)
  value, grads, loss_scale, _ = grad_fn(state.params, state, batch, rng)
  return value, grads, loss_scale


def make_eval_step(model, axis_name: Optional[str] = None):
  """`eval_step(state, batch) -> sums`: masked sums over a padded eval batch (exact counts over
  the whole split), with the EMA weights when the state has them. `nonfinite` counts examples
  whose logits hold a NaN or inf: each counts as wrong and makes `loss_sum` NaN (compiled, the
  cross-entropy of NaN logits can come out finite)."""

  def eval_step(state, batch):
    params = state.ema_params if state.ema_params is not None else state.params
    logits = model.apply({'params': params, 'batch_stats': state.batch_stats},
                         batch['image'], train=False)
    mask = batch['mask'].astype(jnp.float32)
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    loss = jnp.where(finite, cross_entropy(logits, batch['label']), jnp.nan)
    correct = finite & (jnp.argmax(logits, -1) == batch['label'])
    sums = {'loss_sum': jnp.sum(jnp.where(mask > 0, loss, 0.0)),
            'correct': jnp.sum(correct * mask), 'count': jnp.sum(mask),
            'nonfinite': jnp.sum(~finite * mask)}
    return jax.lax.psum(sums, axis_name) if axis_name else sums

  return eval_step
