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

from jax_resnet.errors import TrainingError

AUGMENTS = ('none', 'pad_crop_flip')  # what the jitted step can do on the devices


def check_augment(augment: str):
  """device_data draws and augments inside the step: only the augmentations written here."""
  if augment not in AUGMENTS:
    raise TrainingError(f"device_data supports augment 'none' or 'pad_crop_flip', not "
                        f'{augment!r}; use the host pipeline (device_data=False) for '
                        'ImageNet-style augmentation.', choices=AUGMENTS)


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


def make_multi_step(train_step, num_train: int, batch_size: int, num_devices: int, seed: int,
                    augment: str = 'none', crop_padding: int = 4, steps_per_dispatch: int = 1,
                    axis_name=None):
  """(state, data, rng) -> (state, metrics stacked over steps_per_dispatch), where data is the
  whole train split {'image': (num_train, ...), 'label': (num_train,)} replicated on the
  devices. augment is 'none' or 'pad_crop_flip'."""
  check_augment(augment)
  local_batch = batch_size // num_devices
  data_key = jax.random.fold_in(jax.random.key(seed), 2)  # 0: init, 1: steps

  def one_step(state, data, rng):
    indices = global_indices(data_key, state.step, batch_size, num_train)
    device = jax.lax.axis_index(axis_name) if axis_name else 0
    indices = jax.lax.dynamic_slice(indices, (device * local_batch,), (local_batch,))
    batch_images = jnp.take(data['image'], indices, axis=0)
    if augment == 'pad_crop_flip':
      key = jax.random.fold_in(jax.random.fold_in(data_key, state.step), device + 1)
      batch_images = pad_crop_flip(batch_images, key, crop_padding)
    return train_step(state, {'image': batch_images, 'label': jnp.take(data['label'], indices)},
                      rng)

  def multi_step(state, data, rng):
    if steps_per_dispatch == 1:  # no loop: XLA:CPU runs convolutions inside while loops
      state, metrics = one_step(state, data, rng)  # much slower (docs/benchmarks.md)
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, _: one_step(s, data, rng), state, None,
                        length=steps_per_dispatch)

  return multi_step
