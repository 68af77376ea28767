"""On-device input for small datasets (CIFAR, the embedded digits): the whole train split sits
in device memory; each step draws its batch from a per-epoch permutation, pads, crops and
flips inside the jitted step, and `steps_per_dispatch` steps run in one `lax.scan`, so small
nets are bound by neither Python dispatch nor host-to-device copies.

The batch of step s is a pure function of (seed, s): resuming needs only the step count. The
order differs from the host pipeline's; the distribution (uniform without replacement per
epoch, the same augmentations) is the same.
"""

import jax
import jax.numpy as jnp

from jax_resnet.errors import ConfigError


def check(config, num_train: int):
  if config.steps_per_dispatch < 1:
    raise ConfigError(f'Invalid config: steps_per_dispatch must be >= 1, got '
                      f'{config.steps_per_dispatch}.')
  if config.batch_size > num_train:
    raise ConfigError(f'Invalid config: batch_size={config.batch_size} exceeds the '
                      f'{num_train} training examples that device_data draws from.')


def global_indices(seed_key, step, batch_size: int, num_train: int):
  """Example indices of global batch `step`: epoch e = step // (N // B) uses permutation
  fold_in(key, e); the last N mod B examples of each permutation are dropped."""
  steps_per_epoch = num_train // batch_size
  epoch, offset = step // steps_per_epoch, (step % steps_per_epoch) * batch_size
  permutation = jax.random.permutation(jax.random.fold_in(seed_key, epoch), num_train)
  return jax.lax.dynamic_slice(permutation, (offset,), (batch_size,))


def pad_crop_flip(images, key, padding: int):
  """He et al. 2015: zero-pad, random crop back to size, random horizontal flip, per image."""
  n, h, w, _ = images.shape
  offset_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(offset_key, (n, 2), 0, 2 * padding + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, image.shape[-1]))
  images = jax.vmap(crop)(padded, offsets)
  flips = jax.random.bernoulli(flip_key, 0.5, (n, 1, 1, 1))
  return jnp.where(flips, images[:, :, ::-1], images)


def make_multi_step(config, train_step, axis_name, num_devices: int, num_train: int):
  """(state, data, rng) -> (state, metrics stacked over steps_per_dispatch)."""
  local_batch = config.batch_size // num_devices
  data_key = jax.random.fold_in(jax.random.key(config.seed), 2)  # 0: init, 1: steps

  def one_step(state, data, rng):
    indices = global_indices(data_key, state.step, config.batch_size, num_train)
    device = jax.lax.axis_index(axis_name) if axis_name else 0
    indices = jax.lax.dynamic_slice(indices, (device * local_batch,), (local_batch,))
    images = jnp.take(data['image'], indices, axis=0)
    if config.augment == 'pad_crop_flip':
      key = jax.random.fold_in(jax.random.fold_in(data_key, state.step), device + 1)
      images = pad_crop_flip(images, key, config.crop_padding)
    return train_step(state, {'image': images, 'label': jnp.take(data['label'], indices)}, rng)

  def multi_step(state, data, rng):
    if config.steps_per_dispatch == 1:  # no loop: XLA:CPU runs convolutions inside while
      state, metrics = one_step(state, data, rng)  # loops 10-35x slower (docs/benchmarks.md)
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: one_step(s, data, rng), state, None,
                        length=config.steps_per_dispatch)

  return multi_step
