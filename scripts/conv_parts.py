"""One convolution's forward, input gradient and weight gradient under XLA, beside torch's
forward and backward (channels_last, this machine's threads), and the weight gradient of a 1x1
convolution as a matrix product. Used for the CPU investigation in docs/benchmarks.md.

    python scripts/conv_parts.py
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

# (batch, size, in channels, out channels, kernel): resnet50's and resnet20's common shapes.
SHAPES = [(8, 56, 64, 64, 3), (8, 56, 64, 256, 1), (8, 28, 128, 128, 3), (8, 14, 256, 256, 3),
          (8, 7, 512, 512, 3), (128, 32, 16, 16, 3), (128, 8, 64, 64, 3)]


def timed_ms(fn, calls=5):
  fn()
  start = time.perf_counter()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - start) / calls * 1e3


def jax_parts(n, size, cin, cout, k):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, size, size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), [(k // 2, k // 2)] * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  g = jnp.ones((n, size, size, cout), jnp.float32)
  forward = jax.jit(conv)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
  weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
  times = [timed_ms(lambda: jax.block_until_ready(forward(x, w))),
           timed_ms(lambda: jax.block_until_ready(input_grad(x, w, g))),
           timed_ms(lambda: jax.block_until_ready(weight_grad(x, w, g)))]
  if k == 1:
    as_dot = jax.jit(lambda x, g: jnp.einsum('nhwc,nhwk->ck', x, g)[None, None])
    np.testing.assert_allclose(as_dot(x, g), weight_grad(x, w, g), rtol=1e-4, atol=1e-2)
    times.append(timed_ms(lambda: jax.block_until_ready(as_dot(x, g))))
  return times


def torch_parts(n, size, cin, cout, k):
  import torch
  x = torch.randn(n, cin, size, size).to(memory_format=torch.channels_last).requires_grad_(True)
  conv = torch.nn.Conv2d(cin, cout, k, 1, k // 2, bias=False).to(
      memory_format=torch.channels_last)
  g = torch.ones_like(conv(x))
  forward = timed_ms(lambda: conv(x))
  both = timed_ms(lambda: conv(x).backward(g))
  return forward, both - forward


def main():
  argparse.ArgumentParser(description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
  for shape in SHAPES:
    parts = jax_parts(*shape)
    line = (f'N{shape[0]} {shape[1]}x{shape[1]} {shape[2]}->{shape[3]} k{shape[4]}: jax forward '
            f'{parts[0]:.1f} ms, input grad {parts[1]:.1f}, weight grad {parts[2]:.1f}')
    if len(parts) > 3:
      line += f' (as a matrix product {parts[3]:.1f})'
    forward, backward = torch_parts(*shape)
    print(f'{line} | torch forward {forward:.1f} ms, backward {backward:.1f}', flush=True)


if __name__ == '__main__':
  main()
