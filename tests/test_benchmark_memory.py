"""`jax-resnet benchmark --memory`: XLA's memory analysis of the compiled train step, per remat
setting, and the largest batch that fits, found by compiling (resnet20, small inputs)."""

import subprocess
import sys

import pytest

from jax_resnet import benchmark, benchmark_memory


def _args(*extra):
  return benchmark.parse_args(['--memory', '--model', 'resnet20', '--batch-size', '16', *extra])


@pytest.mark.slow
def test_block_remat_needs_less_temporary_memory_than_none():
  args = _args()
  none = benchmark_memory.step_memory(args, 'none', 16)
  block = benchmark_memory.step_memory(args, 'block', 16)
  # Same state and batch, donated state aliased; only what the backward pass keeps differs.
  assert block.argument_bytes == none.argument_bytes > 16 * 32 * 32 * 3 * 4
  assert 0 < none.alias_bytes <= none.output_bytes  # the new state reuses the donated one
  assert block.temp_bytes < 0.8 * none.temp_bytes
  assert none.peak_bytes == (none.argument_bytes + none.output_bytes - none.alias_bytes
                             + none.temp_bytes)


@pytest.mark.slow  # 30 s: five compiles
def test_the_largest_batch_fits_and_the_next_multiple_does_not():
  args = _args()
  measure = lambda batch: benchmark_memory.step_memory(args, 'none', batch)
  limit = measure(40).peak_bytes + 1
  batch, memory, tried = benchmark_memory.largest_batch(measure, limit, measure(16))
  assert batch >= 40 and batch % 8 == 0
  assert memory.peak_bytes <= limit
  assert measure(batch + 8).peak_bytes > limit
  assert {16, 32, batch} <= {m.batch_size for m in tried}


@pytest.mark.parametrize('text, expected', [('80GB', 80 * 10 ** 9), ('16GiB', 16 * 2 ** 30),
                                            ('512 MiB', 512 * 2 ** 20), ('1000', 1000),
                                            ('1.5gb', 15 * 10 ** 8)])
def test_device_memory_sizes(text, expected):
  assert benchmark_memory.parse_bytes(text) == expected


def test_a_bad_device_memory_is_one_line_and_exit_2():
  proc = subprocess.run([sys.executable, '-m', 'jax_resnet.benchmark', '--memory',
                         '--model', 'resnet20', '--device-memory', '80 parsecs'],
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "python -m jax_resnet.benchmark: error: --device-memory: '80 parsecs' is not a memory "
      'size such as 80GB or 16GiB')
