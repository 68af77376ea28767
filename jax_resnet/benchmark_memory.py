"""`jax-resnet benchmark --memory`: what the compiled train step needs in device memory, from
XLA's own buffer assignment (`compiled.memory_analysis()`), for each remat setting, and the
largest batch that fits a given memory, found by compiling.

Nothing runs and nothing is allocated: the state and the batch are abstract (`jax.eval_shape`,
`jax.ShapeDtypeStruct`), the step is the trainer's (`setup.build_run`, one device), so the
figures are those of the backend that compiles (a CPU's buffer assignment is not a GPU's:
docs/benchmarks.md labels them). Peak bytes are argument + output - aliased (the donated
state) + temporary.
"""

import argparse
import dataclasses
import re
import sys
import time

import jax
import jax.numpy as jnp

from jax_resnet.config import boundary
from jax_resnet.errors import UserError
from jax_resnet.remat import REMAT_POLICIES
from jax_resnet.training import setup, steps

_UNITS = {'': 1, 'B': 1, 'KB': 1e3, 'MB': 1e6, 'GB': 1e9, 'TB': 1e12, 'KIB': 2 ** 10,
          'MIB': 2 ** 20, 'GIB': 2 ** 30, 'TIB': 2 ** 40}


class MemorySizeError(UserError, ValueError):
  """--device-memory that is not a size."""


def parse_bytes(text: str) -> int:
  """'80GB' -> 80e9, '80GiB' -> 80 * 2**30, '1000' -> 1000; MemorySizeError otherwise."""
  found = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([KMGT]?i?B?)\s*', str(text), re.IGNORECASE)
  if not found or found[2].upper() not in _UNITS or float(found[1]) <= 0:
    raise MemorySizeError(f'{text!r} is not a memory size such as 80GB or 16GiB')
  return int(float(found[1]) * _UNITS[found[2].upper()])


@dataclasses.dataclass(frozen=True)
class StepMemory:
  remat: str
  batch_size: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  compile_seconds: float

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def step_memory(args, remat: str, batch_size: int) -> StepMemory:
  """Compiles the train step of `args` (benchmark's) with `remat` at `batch_size` on one
  device and reads XLA's memory analysis."""
  from jax_resnet.benchmark import bench_config
  config = bench_config(argparse.Namespace(**{**vars(args), 'batch_size': batch_size}))
  config.model_options.remat = remat
  spec = boundary.resolve(config)
  parts = setup.build_run(spec, num_train=batch_size * 1000, devices=jax.devices()[:1])
  shape = (args.image_size, args.image_size, 3)
  state = jax.eval_shape(lambda r: steps.create_train_state(
      parts.model, parts.tx, r, shape), jax.random.key(0))
  batch = {'image': jax.ShapeDtypeStruct((batch_size,) + shape, jnp.float32),
           'label': jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  start = time.perf_counter()
  compiled = parts.runner.jitted('train').lower(state, batch, jax.random.key(1)).compile()
  seconds = time.perf_counter() - start
  stats = compiled.memory_analysis()
  return StepMemory(remat, batch_size, int(stats.argument_size_in_bytes),
                    int(stats.output_size_in_bytes), int(stats.alias_size_in_bytes),
                    int(stats.temp_size_in_bytes), seconds)


def largest_batch(measure, device_bytes: int, first: StepMemory, multiple: int = 8):
  """The largest multiple of `multiple` whose compiled step fits `device_bytes`, by
  compiling: a line through two compiled sizes predicts it, then a bracket [fits, does not
  fit] around the prediction is closed by bisection. (batch, its StepMemory, compiles)."""
  second = measure(first.batch_size * 2)
  per_image = (second.peak_bytes - first.peak_bytes) / first.batch_size
  fixed = first.peak_bytes - per_image * first.batch_size
  if fixed >= device_bytes or per_image <= 0:
    return 0, None, [first, second]
  tried = {m.batch_size: m for m in (first, second)}

  def fits(batch):
    if batch not in tried:
      tried[batch] = measure(batch)
    return tried[batch].peak_bytes <= device_bytes

  guess = max(multiple, int((device_bytes - fixed) / per_image) // multiple * multiple)
  low, high, step = (guess, None, multiple) if fits(guess) else (None, guess, multiple)
  while low is None or high is None:  # widen the bracket until it holds the answer
    probe = (low + step) if high is None else max(high - step, 0)
    if probe == 0:
      return 0, None, list(tried.values())
    if fits(probe):
      low = probe
    else:
      high = probe
    step *= 2
  while high - low > multiple:  # bisection on multiples
    middle = (low + high) // 2 // multiple * multiple
    low, high = (middle, high) if fits(middle) else (low, middle)
  return low, tried[low], list(tried.values())


def format_bytes(n) -> str:
  return f'{n / 2 ** 30:.2f} GiB'


def run(args, device_bytes: int, remats=REMAT_POLICIES, out=sys.stdout):
  """The table of `--memory`: per remat, the step's bytes at --batch-size and the largest
  batch fitting `device_bytes`. Returns the rows as dicts."""
  rows = []
  platform = jax.devices()[0].platform
  for remat in remats:
    measure = lambda b, remat=remat: _progress_measure(args, remat, b)
    first = measure(args.batch_size)
    batch, at_batch, tried = largest_batch(measure, device_bytes, first)
    rows.append({
        'remat': remat, 'batch_size': args.batch_size, 'argument_bytes': first.argument_bytes,
        'output_bytes': first.output_bytes, 'alias_bytes': first.alias_bytes,
        'temp_bytes': first.temp_bytes, 'peak_bytes': first.peak_bytes,
        'compile_seconds': first.compile_seconds, 'largest_batch': batch,
        'largest_batch_peak_bytes': at_batch.peak_bytes if at_batch else None,
        'compiled_batches': sorted(m.batch_size for m in tried),
        'device_memory_bytes': device_bytes, 'compiled_on': platform})
  base = rows[0]['temp_bytes']
  print(f'{args.model} train step, {args.image_size}x{args.image_size}, {args.dtype}, batch '
        f'{args.batch_size}, one device, compiled by XLA:{platform} (memory_analysis):', file=out)
  for r in rows:
    print(f"  remat={r['remat']:10s} arguments {format_bytes(r['argument_bytes'])}, outputs "
          f"{format_bytes(r['output_bytes'])} ({format_bytes(r['alias_bytes'])} aliased), "
          f"temporary {format_bytes(r['temp_bytes'])} ({100 * r['temp_bytes'] / base:.0f}% of "
          f"{rows[0]['remat']}), peak {format_bytes(r['peak_bytes'])}; largest batch in "
          f"{format_bytes(device_bytes)}: {r['largest_batch']} (compiled "
          f"{', '.join(map(str, r['compiled_batches']))}); compile {r['compile_seconds']:.0f} s",
          file=out)
  return rows


def _progress_measure(args, remat, batch):
  result = step_memory(args, remat, batch)
  print(f'memory: remat={remat} batch {batch}: peak {format_bytes(result.peak_bytes)} '
        f'(temporary {format_bytes(result.temp_bytes)}), compiled in '
        f'{result.compile_seconds:.0f} s', file=sys.stderr, flush=True)
  return result


__all__ = ['StepMemory', 'largest_batch', 'parse_bytes', 'run', 'step_memory']
