"""Where a model's train step spends its time: eval forward, train-mode forward, forward +
backward (no optimizer), each jitted alone and timed (mean of 4 calls after one). Used for the
CPU investigation in docs/benchmarks.md.

    python scripts/cpu_breakdown.py resnet50 8 224 [--conv1x1-as-dot] [--freeze-batch-norm]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_resnet as jr


def timed_ms(fn, *args, calls=4):
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(calls):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / calls * 1e3


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('model')
  parser.add_argument('batch_size', type=int)
  parser.add_argument('image_size', type=int)
  parser.add_argument('--conv1x1-as-dot', action='store_true')
  parser.add_argument('--freeze-batch-norm', action='store_true')
  args = parser.parse_args()
  classes = 1000 if args.image_size >= 64 else 10
  model = jr.create_model(args.model, num_classes=classes, conv1x1_as_dot=args.conv1x1_as_dot,
                          freeze_batch_norm=args.freeze_batch_norm)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(args.batch_size, args.image_size, args.image_size, 3)),
                  jnp.float32)
  labels = jnp.asarray(rng.integers(0, classes, args.batch_size))
  variables = jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()

  def loss(params, batch_stats):
    logits, new_stats = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                    train=True, mutable=['batch_stats'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_stats

  eval_forward = jax.jit(lambda v: model.apply(v, x, train=False))
  train_forward = jax.jit(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']))
  gradient = jax.jit(jax.grad(loss, has_aux=True))
  print(f'{args.model} batch {args.batch_size} size {args.image_size} '
        f'conv1x1_as_dot={args.conv1x1_as_dot} freeze_batch_norm={args.freeze_batch_norm}: '
        f'eval forward {timed_ms(eval_forward, variables):.0f} ms, '
        f'train forward {timed_ms(train_forward, variables):.0f} ms, forward+backward '
        f"{timed_ms(gradient, variables['params'], variables['batch_stats']):.0f} ms")


if __name__ == '__main__':
  main()
