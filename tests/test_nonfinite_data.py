"""Non-finite data is named, not averaged: a NaN pixel when computing the per-pixel mean (the
cached mean too), a run whose every update was skipped, and NaN logits in the compiled eval
step (counted, the loss NaN, never a finite number)."""

import os

import jax
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet.data import stats, transforms
from jax_resnet.data.sources import Sources
from jax_resnet.errors import DataError
from jax_resnet.training import loop, steps
from test_training import _config


def test_a_nan_pixel_is_refused_naming_the_example_and_a_cached_nan_mean_is_not_used(tmp_path):
  rng = np.random.default_rng(0)
  train = [{'image': rng.random((8, 8, 3), dtype=np.float32), 'label': i % 10} for i in range(6)]
  train[4]['image'][2, 3, 1] = np.nan
  sources = Sources(train=train, eval=train, num_classes=10, channels=3,
                    cache_name='mine-train', cache_dir=str(tmp_path))
  preprocess = transforms.Preprocess(8, 'none', 0, transforms.Normalizer(), 10)
  cached = tmp_path / 'mine-train-n6-8px-pixel_mean.npy'
  np.save(cached, np.full((8, 8, 3), np.nan, np.float32))  # as an unchecked version left it
  with pytest.raises(DataError) as err:
    stats.per_pixel_mean(sources, preprocess)
  assert str(err.value) == (
      'Training example 4 of mine-train has 1 non-finite pixel value(s) (NaN or inf); the '
      'per-pixel mean image would be NaN, and so would every normalised example. Fix or remove '
      "that example, or use normalize='mean_std'.")
  train[4]['image'][2, 3, 1] = 0.5
  mean = stats.per_pixel_mean(sources, preprocess)
  np.testing.assert_allclose(mean, np.mean([t['image'] for t in train], axis=0), rtol=1e-6)
  np.testing.assert_array_equal(np.load(cached), mean)  # the NaN cache was replaced


@pytest.mark.slow
def test_a_run_whose_every_update_was_skipped_is_not_done(tmp_path):
  # Weight decay makes every gradient large: each update overflows the weights, from the first.
  config = _config(learning_rate=3e38, weight_decay=1e3, skip_nonfinite_updates=True,
                   num_train_steps=4, log_every_steps=2, checkpoint_every_steps=100,
                   eval_every_steps=100)
  with pytest.raises(loop.TrainingDivergedError) as err:
    jr.train_and_evaluate(config, str(tmp_path))
  assert str(err.value) == (
      'Every update of this run was skipped (4 of 4 steps had a non-finite loss or gradients; '
      'skip_nonfinite_updates=True), so the weights did not change and the run is not done (no '
      'checkpoint was written yet). Check the input data for NaN or inf, or lower the learning '
      'rate.')
  assert not os.path.exists(tmp_path / 'summary.json')


def test_the_compiled_eval_step_counts_non_finite_logits_and_its_loss_is_nan():
  model = jr.create_model('resnet20', num_classes=10)
  tx = jr.training.optim.make_optimizer('sgd', momentum=0.0, nesterov=False, weight_decay=0.0,
                                        weight_decay_mode='l2', decay_bn_and_bias=True)
  state = steps.create_train_state(model, tx, jax.random.key(0), (8, 8, 3))
  images = np.array(jax.random.uniform(jax.random.key(1), (4, 8, 8, 3)))
  images[0, 1, 1, 0] = images[1, 5, 2, 2] = images[3, 0, 0, 0] = np.nan  # row 3: padding
  batch = {'image': images, 'label': np.zeros(4, np.int32),
           'mask': np.array([True, True, True, False])}
  sums = jax.jit(steps.make_eval_step(model))(state, batch)
  assert (float(sums['count']), float(sums['nonfinite'])) == (3.0, 2.0)
  assert np.isnan(float(sums['loss_sum']))
  assert float(sums['correct']) <= 1.0  # the two NaN rows count as wrong
