"""The on-device input path (config.device_data): sampling, augmentation, training."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_resnet.config import train_and_evaluate
from jax_resnet.training import device_data
from test_training import _config


def test_each_epoch_is_a_permutation_without_repeats():
  key = jax.random.key(0)
  batches = [np.asarray(device_data.global_indices(key, s, 64, 1437)) for s in range(44)]
  first, second = np.concatenate(batches[:22]), np.concatenate(batches[22:])
  assert len(set(first)) == 22 * 64 and first.max() < 1437 and first.min() >= 0
  assert len(set(second)) == 22 * 64
  assert not np.array_equal(first, second)


def test_pad_crop_flip_returns_shifted_or_mirrored_windows():
  image = jnp.arange(8 * 8, dtype=jnp.float32).reshape(1, 8, 8, 1) + 1
  images = jnp.repeat(image, 256, axis=0)
  out = np.asarray(device_data.pad_crop_flip(images, jax.random.key(3), 2))
  padded = np.pad(np.asarray(image[0, :, :, 0]), 2)
  windows = {(dy, dx, flip): (padded[dy:dy + 8, dx:dx + 8][:, ::-1] if flip else
                              padded[dy:dy + 8, dx:dx + 8])
             for dy in range(5) for dx in range(5) for flip in (0, 1)}
  matches = [[k for k, w in windows.items() if np.array_equal(o[:, :, 0], w)] for o in out]
  assert all(matches)
  flips = np.mean([m[0][2] for m in matches])
  assert abs(flips - 0.5) < 4 * np.sqrt(0.25 / 256)
  assert len({m[0][:2] for m in matches}) == 25  # every offset of the 5x5 range occurs


@pytest.mark.slow  # compiles a scan of train steps on 8 devices (a minute on 2 cores)
def test_training_on_device_with_several_steps_per_dispatch(tmp_path):
  config = _config(device_data=True, steps_per_dispatch=3, augment='pad_crop_flip',
                   crop_padding=2, batch_size=16, num_train_steps=9, log_every_steps=4,
                   eval_every_steps=6, checkpoint_every_steps=6)
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == 9 and summary['eval_examples'] == 360
  rows = [json.loads(line) for line in open(os.path.join(tmp_path, 'metrics.jsonl'))]
  # Intervals are crossed, not hit: dispatches end at 3, 6, 9.
  assert [(r['split'], r['step']) for r in rows] == [
      ('train', 6), ('eval', 6), ('train', 9), ('eval', 9)]
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['6', '9']
