"""Our model inside the Flax ImageNet example's training pattern, on 2 simulated devices: init
outside pmap with train=True, a TrainState with batch statistics replicated over the devices, a
pmap-ed step that averages gradients and batch statistics with lax.pmean, cross-replica
BatchNorm (bn_axis_name='batch')."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import jax_utils
from flax.training import train_state

import jax_resnet as jr

NUM_CLASSES = 4
STEPS = 6


class TrainState(train_state.TrainState):
  batch_stats: Any


def _train_step(state, batch):
  """The example's step: gradients and the new statistics averaged over 'batch'."""
  def loss_fn(params):
    logits, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats},
                                     batch['image'], mutable=['batch_stats'])
    one_hot = jax.nn.one_hot(batch['label'], NUM_CLASSES)
    return optax.softmax_cross_entropy(logits, one_hot).mean(), updates

  (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, 'batch')
  stats = jax.lax.pmean(updates['batch_stats'], 'batch')
  return state.apply_gradients(grads=grads, batch_stats=stats), jax.lax.pmean(loss, 'batch')


def _batch(devices):
  """(devices, 8, 32, 32, 3) images whose class is the colour channel that is brightest."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, NUM_CLASSES, (devices, 8))
  images = rng.normal(0, 0.5, (devices, 8, 32, 32, 3))
  images[..., :] += np.eye(4, 3)[labels][:, :, None, None, :] * 2.0
  return {'image': jnp.asarray(images, jnp.float32), 'label': jnp.asarray(labels)}


def test_example_training_pattern_with_cross_replica_batch_norm():
  devices = jax.devices()[:2]
  model = jr.create_model('resnet18', stage_sizes=(1, 1), stage_widths=(8, 16), stem_width=8,
                          num_classes=NUM_CLASSES, bn_axis_name='batch', padding='same',
                          zero_init_residual=True)
  # As the example's `initialized`: jit-ed init on one image, default train=True, no pmap.
  variables = jax.jit(model.init)({'params': jax.random.key(0)}, jnp.ones((1, 32, 32, 3)))
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            tx=optax.sgd(0.1, momentum=0.9, nesterov=True),
                            batch_stats=variables['batch_stats'])
  state = jax_utils.replicate(state, devices=devices)
  step = jax.pmap(_train_step, axis_name='batch', devices=devices)
  batch = _batch(len(devices))
  losses = []
  for _ in range(STEPS):
    state, loss = step(state, batch)
    losses.append(float(loss[0]))
  assert losses[-1] < 0.5 * losses[0], losses
  # Every replica holds the same parameters, optimiser state and statistics.
  for leaf in jax.tree.leaves((state.params, state.opt_state, state.batch_stats)):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  # Cross-replica BatchNorm: the running mean moved towards the mean over both replicas.
  assert float(jnp.max(jnp.abs(state.batch_stats['bn_init']['mean'][0]))) > 0
