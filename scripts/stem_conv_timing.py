"""The ImageNet stem's 7x7/2 convolution alone under each `stem_conv` computation: forward,
and the weight gradient of a sum of squares (forward included), jitted, float32, ms per call
(min and max of three means of 8 calls). Used for the CPU 'auto' choice in docs/benchmarks.md.

    python scripts/stem_conv_timing.py [batch] [size]      # default: 8 224
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet import stems


def timed_ms(fn, *args, calls=8, repeats=3):
  jax.block_until_ready(fn(*args))
  means = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
    means.append((time.perf_counter() - start) / calls * 1e3)
  return min(means), max(means)


def plain(x, kernel, strides):
  return jax.lax.conv_general_dilated(x, kernel, strides, [(3, 3), (3, 3)],
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('batch', type=int, nargs='?', default=8, help='images per call')
  parser.add_argument('size', type=int, nargs='?', default=224, help='image side')
  args = parser.parse_args()
  batch, size = args.batch, args.size
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(7, 7, 3, 64)), jnp.float32)
  for name, conv in (('conv', plain), ('pad_channels', stems.padded_channels_conv),
                     ('space_to_depth', stems.space_to_depth_conv)):
    forward = jax.jit(lambda x, k, conv=conv: conv(x, k, (2, 2)))
    grad = jax.jit(jax.grad(lambda k, x, conv=conv: jnp.sum(conv(x, k, (2, 2)) ** 2)))
    print(f'{name:15s} forward %.1f-%.1f ms, weight gradient %.1f-%.1f ms' % (
        timed_ms(forward, x, kernel) + timed_ms(grad, kernel, x)), flush=True)


if __name__ == '__main__':
  main()
