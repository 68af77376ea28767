"""BatchNorm's batch variance: one-pass E[x^2] - E[x]^2 against two-pass mean((x - mean)^2).

Accuracy: per-channel variance of inputs with |mean| >> std, computed in float32 from float32 and
from bfloat16-rounded inputs (bfloat16 compute keeps its statistics in float32), against the
float64 variance of the same rounded values. Speed: a model's jitted forward+backward (train
mode, batch statistics) with each form, alternated (mean of 4 calls after one, per round).

    python scripts/bn_variance.py [--model resnet50 --batch-size 8 --image-size 224 --rounds 3]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_resnet as jr
from cpu_breakdown import timed_ms  # this folder: python puts the script's directory on sys.path
from jax_resnet import layers


def one_pass(x, axis_name=None):
  """The form used before: one reduction of x and x^2, variance clamped at 0."""
  axes = tuple(range(x.ndim - 1))
  stats = (jnp.mean(x, axes), jnp.mean(jnp.square(x), axes))
  if axis_name is not None:
    stats = layers.cross_replica_mean(axis_name)(stats)
  mean, mean_of_squares = stats
  count = int(np.prod(x.shape[:-1])) * (jax.lax.psum(1, axis_name) if axis_name else 1)
  return mean, jnp.maximum(0.0, mean_of_squares - jnp.square(mean)), count


FORMS = {'one-pass': one_pass, 'two-pass': layers.batch_statistics}


def accuracy_table():
  rng = np.random.default_rng(0)
  print('| mean / std | input | one-pass rel. error | two-pass rel. error |')
  print('| --- | --- | --- | --- |')
  for ratio in (1, 1e2, 1e3, 1e4):
    sample = ratio + rng.normal(size=(64, 14, 14, 32))  # std 1, 6,272 values per channel
    for name, dtype in (('float32', jnp.float32), ('bfloat16', jnp.bfloat16)):
      x = jnp.asarray(sample, dtype)
      exact = np.var(np.asarray(x, np.float64).reshape(-1, 32), axis=0)
      if not np.all(exact > 0):
        print(f'| {ratio:g} | {name} | (every value rounds to one number) | |')
        continue
      errors = []
      for form in FORMS.values():
        var = np.asarray(jax.jit(lambda v, f=form: f(jnp.asarray(v, jnp.float32))[1])(x))
        errors.append(float(np.max(np.abs(var - exact) / exact)))
      print(f'| {ratio:g} | {name} | {errors[0]:.2e} | {errors[1]:.2e} |')


def speed(model_name, batch_size, image_size, rounds):
  classes = 1000 if image_size >= 64 else 10
  model = jr.create_model(model_name, num_classes=classes, conv1x1_as_dot=True)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch_size, image_size, image_size, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, classes, batch_size))
  variables = jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()

  def loss(params, batch_stats):
    logits, new_stats = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                    train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_stats

  steps = {}
  for name, form in FORMS.items():  # BatchNorm looks the function up at trace time
    layers.batch_statistics = form
    steps[name] = jax.jit(jax.grad(loss, has_aux=True)).lower(
        variables['params'], variables['batch_stats']).compile()
  layers.batch_statistics = FORMS['two-pass']
  times = {name: [] for name in FORMS}
  for _ in range(rounds):
    for name, step in steps.items():
      times[name].append(timed_ms(step, variables['params'], variables['batch_stats']))
  for name, values in times.items():
    print(f'{model_name} batch {batch_size} size {image_size}, {name}: forward+backward '
          + ', '.join(f'{v:.0f}' for v in values) + ' ms')


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model', default='resnet50')
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--image-size', type=int, default=224)
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  accuracy_table()
  speed(args.model, args.batch_size, args.image_size, args.rounds)


if __name__ == '__main__':
  main()
