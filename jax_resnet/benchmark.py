"""Throughput of the public train (or eval) step, optionally beside torchvision in one run.

    jax-resnet benchmark --model resnet50 --batch-size 64 --dtype bfloat16 \
        [--mode train|eval] [--steps N] [--image-size 224] [--stem-conv auto] [--vs torch] \
        [--json FILE]
    jax-resnet benchmark --model resnet20 \
        --batch-size 128 --device-data 50000 --steps-per-dispatch 20   # the on-device path
    jax-resnet benchmark --memory --model resnet50 --batch-size 256 --dtype bfloat16 \
        --device-memory 80GB     # compile only: memory per remat setting, largest batch

    jax-resnet benchmark --data folder:PATH [--workers 2]  # decoding and augmentation only,
                                                           # beside torchvision (benchmark_data)

(`python -m jax_resnet.benchmark` is the same program.)

--image-size and --num-classes default to the model's own (`jax_resnet.model_info`): 224 and
1000 for ImageNet models, 32 and 10 for the CIFAR ones. Image models only.

Images/s is the median over timed steps after warm-up (each step synchronised), with min/max;
with --device-data N the train step runs on N synthetic images kept on the device (random
crop and flip inside the step, `steps_per_dispatch` steps per call) and a timed call is
--steps-per-dispatch steps;
compile_seconds is the time to lower and compile the step ahead of time; FLOPs per image come
from XLA's cost analysis of that compiled step, and MFU uses a table of published peaks
(unknown devices: omitted, not guessed).
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

import jax_resnet
from jax_resnet import benchmark_memory
from jax_resnet.config import boundary
from jax_resnet.errors import UserError
from jax_resnet.remat import REMAT_POLICIES
from jax_resnet.training import setup
from jax_resnet.stems import STEM_CONVS

# Dense peak FLOP/s per chip from vendor data sheets, by (device_kind substring, dtype).
PEAK_FLOPS = {
    ('H200', 'bfloat16'): 989e12, ('H100', 'bfloat16'): 989e12, ('A100', 'bfloat16'): 312e12,
    ('H200', 'float32'): 67e12, ('H100', 'float32'): 67e12, ('A100', 'float32'): 19.5e12,
    ('TPU v4', 'bfloat16'): 275e12, ('TPU v5 lite', 'bfloat16'): 197e12,
    ('TPU v5e', 'bfloat16'): 197e12, ('TPU v6', 'bfloat16'): 918e12,
}

# The largest --image-size: a side beyond it asks for gigabytes per image (an input of side s
# is s * s * 3 float32 values, before any activation).
MAX_IMAGE_SIZE = 4096


def peak_flops(device_kind: str, dtype: str):
  for (kind, peak_dtype), value in PEAK_FLOPS.items():
    if kind in device_kind and peak_dtype == dtype:
      return value
  return None


def bench_config(args):
  """The trainer's config for the benchmarked run: synthetic data, a constant learning rate."""
  config = jax_resnet.base_config()
  config.update(dict(model=args.model, num_classes=args.num_classes, dataset='synthetic',
                     image_size=args.image_size, batch_size=args.batch_size,
                     eval_batch_size=args.batch_size, dtype=args.dtype, normalize='none',
                     num_train_steps=1, warmup_epochs=0.0, lr_schedule='constant',
                     parallelism=args.parallelism, conv1x1=args.conv1x1,
                     stem_conv=args.stem_conv, device_data=args.device_data > 0,
                     steps_per_dispatch=args.steps_per_dispatch,
                     augment='pad_crop_flip' if args.device_data else 'none'))
  if args.scan_blocks:
    config.model_options.scan_blocks = True
  if getattr(args, 'remat', 'none') != 'none':
    config.model_options.remat = args.remat
  return config


def prepare(args):
  """(runner, placed initial state) of the run the benchmark times, through the trainer's own
  boundary and setup."""
  spec = boundary.resolve(bench_config(args))
  parts = setup.build_run(spec, num_train=args.device_data or args.batch_size * 1000)
  shape = (args.image_size, args.image_size, 3)
  state = setup.host_state(spec, parts.model, parts.tx, shape)
  return parts.runner, parts.runner.place_state(state)


def _timed(fn, steps_to_run):
  times = []
  for _ in range(steps_to_run):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def _flops(staged):
  """XLA's FLOP count of a lowered or compiled step, or None."""
  try:
    cost = staged.cost_analysis()
  except Exception:  # some backends/versions have no cost analysis
    return None
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops']) if cost and cost.get('flops') else None


def _compile(jitted, *args):
  """(seconds to lower and compile, FLOPs of the step or None). FLOPs come from the HLO before
  optimisation: after it, XLA:GPU's convolutions are cuDNN custom calls that count 0
  (docs/benchmarks.md)."""
  start = time.perf_counter()
  lowered = jitted.lower(*args)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  return seconds, _flops(lowered) or _flops(compiled)


def bench_jax(args):
  runner, state = prepare(args)
  shape = (args.image_size, args.image_size, 3)
  rng = np.random.default_rng(0)
  key = jax.random.key(1)
  holder = {'state': state}
  if args.device_data:
    data = runner.place_state({
        'image': rng.normal(size=(args.device_data,) + shape).astype(np.float32),
        'label': rng.integers(0, args.num_classes, args.device_data).astype(np.int32)})
    def run():
      holder['state'], metrics = runner.multi_step(holder['state'], data, key)
      return metrics
    jitted, jit_args = runner.jitted('multi'), (holder['state'], data, key)
    return _measure(args, run, jitted, jit_args)
  batch = runner.place_batch({
      'image': rng.normal(size=(args.batch_size,) + shape).astype(np.float32),
      'label': rng.integers(0, args.num_classes, args.batch_size).astype(np.int32),
      'mask': np.ones(args.batch_size, bool)})
  if args.mode == 'train':
    def run():
      holder['state'], metrics = runner.train_step(holder['state'], batch, key)
      return metrics
    jitted, jit_args = runner.jitted('train'), (holder['state'], batch, key)
  else:
    run = lambda: runner.eval_step(holder['state'], batch)
    jitted, jit_args = runner.jitted('eval'), (holder['state'], batch)
  return _measure(args, run, jitted, jit_args)


def _measure(args, run, jitted, jit_args):
  _progress(f'jax: compiling the {args.mode} step of {args.model} (batch {args.batch_size}, '
            f'{args.image_size}x{args.image_size}, {args.dtype}, {args.parallelism})')
  compile_seconds, flops = _compile(jitted, *jit_args)
  _progress(f'jax: compiled in {compile_seconds:.1f} s; {1 + args.warmup} warm-up and '
            f'{args.steps} timed steps')
  _timed(run, 1 + args.warmup)
  times = _timed(run, args.steps)
  return summarise(args, times, compile_seconds, flops)


def summarise(args, times, compile_seconds, flops):
  steps_per_call = args.steps_per_dispatch if args.device_data else 1
  step = float(np.median(times)) / steps_per_call
  per_device_batch = args.batch_size / jax.device_count()
  result = {
      'framework': 'jax', 'model': args.model, 'mode': args.mode, 'dtype': args.dtype,
      'scan_blocks': args.scan_blocks, 'remat': args.remat, 'device_data': args.device_data,
      'conv1x1': ('dot' if boundary.conv1x1_as_dot(args.conv1x1, jax.default_backend())
                  else 'conv'),
      'stem_conv': boundary.stem_conv(args.stem_conv, args.model, jax.default_backend()),
      'steps_per_dispatch': steps_per_call,
      'batch_size': args.batch_size, 'image_size': args.image_size,
      'images_per_second': args.batch_size / step,
      'images_per_second_min': args.batch_size * steps_per_call / max(times),
      'images_per_second_max': args.batch_size * steps_per_call / min(times),
      'step_ms': 1e3 * step, 'compile_seconds': compile_seconds,
      'timed_steps': len(times) * steps_per_call, 'device': jax.devices()[0].device_kind,
      'devices': jax.device_count(), 'jax': jax.__version__,
  }
  stats = getattr(jax.devices()[0], 'memory_stats', lambda: None)()
  if stats and 'peak_bytes_in_use' in stats:
    result['peak_memory_bytes'] = int(stats['peak_bytes_in_use'])
  if flops and steps_per_call == 1 and not args.scan_blocks:  # XLA counts a loop body once
    result['flops_per_image'] = flops / per_device_batch
    peak = peak_flops(result['device'], args.dtype)
    if peak:
      result['mfu'] = flops / step / peak
  return result


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
  """The module's usage text as written, each option with its default."""


def parse_args(argv, prog='python -m jax_resnet.benchmark'):
  p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_HelpFormatter)
  p.add_argument('--model', default='resnet50', help='a name from jax_resnet.list_models()')
  p.add_argument('--batch-size', type=int, default=64, help='global batch over all devices')
  p.add_argument('--image-size', type=int,
                 help="default: the model's native input_size (jax_resnet.model_info)")
  p.add_argument('--num-classes', type=int, help="default: the model's registered num_classes")
  p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'],
                 help='compute dtype (parameters float32)')
  p.add_argument('--mode', default='train', choices=['train', 'eval'], help='the step timed')
  p.add_argument('--steps', type=int, default=10, help='timed steps')
  p.add_argument('--warmup', type=int, default=2, help='untimed steps after the first')
  p.add_argument('--parallelism', default=jax_resnet.base_config().parallelism,
                 choices=['pmap', 'shard_map'], help="the trainer's data parallelism")
  p.add_argument('--scan-blocks', action='store_true', help='nn.scan over identical blocks')
  p.add_argument('--conv1x1', default='auto', choices=boundary.CONV1X1_CHOICES,
                 help="1x1 convs as convolutions or matrix products (auto: dot on CPU only)")
  p.add_argument('--stem-conv', default='auto', choices=('auto',) + STEM_CONVS,
                 help='how the ImageNet 7x7/2 stem is computed, same weights (auto: per backend)')
  p.add_argument('--device-data', type=int, default=0, metavar='N',
                 help='train on N synthetic images held on the device (the device_data path)')
  p.add_argument('--steps-per-dispatch', type=int, default=1,
                 help='with --device-data: train steps per host call (lax.scan)')
  p.add_argument('--vs', choices=['torch'], default=None,
                 help='also time torchvision in this run')
  p.add_argument('--remat', default='none', choices=REMAT_POLICIES,
                 help='what the backward pass recomputes of each block (jax_resnet.remat)')
  p.add_argument('--memory', action='store_true',
                 help="compile only: XLA's memory analysis of the train step for each remat "
                      'setting and the largest batch fitting --device-memory')
  p.add_argument('--device-memory', default='80GB', help='with --memory: e.g. 80GB, 16GiB')
  p.add_argument('--json', help='write the results to this file')
  args = p.parse_args(argv)
  if args.steps < 1 or args.batch_size < 1 or args.steps_per_dispatch < 1:
    p.error('--steps, --batch-size and --steps-per-dispatch must be positive')
  if args.device_data and (args.mode != 'train' or args.device_data < args.batch_size):
    p.error('--device-data N needs --mode train and N >= --batch-size')
  if args.memory:
    try:
      args.device_memory_bytes = benchmark_memory.parse_bytes(args.device_memory)
    except UserError as error:
      p.error(f'--device-memory: {error}')
    if args.device_data or args.mode != 'train' or args.vs:
      p.error('--memory measures the train step: leave out --device-data, --mode eval, --vs')
  if args.steps_per_dispatch > 1 and not args.device_data:
    p.error('--steps-per-dispatch > 1 needs --device-data N')
  try:
    info = jax_resnet.model_info(args.model)
  except UserError as error:  # an unknown model, named with close matches
    p.error(str(error))
  if info.input_kind != 'image':
    p.error(f"{args.model} takes {info.input_kind} clips (model_info input_kind "
            f"{info.input_kind!r}); the benchmark times image models only: pick one of "
            "jax_resnet.list_models() whose model_info input_kind is 'image'.")
  args.image_size = info.input_size if args.image_size is None else args.image_size
  args.num_classes = info.num_classes if args.num_classes is None else args.num_classes
  smallest = max(8, info.min_input_size)
  if not smallest <= args.image_size <= MAX_IMAGE_SIZE:
    p.error(f'--image-size {args.image_size} is outside {smallest}..{MAX_IMAGE_SIZE} for '
            f'{args.model} (its stem and stages downsample by {info.min_input_size}; its native '
            f'size is {info.input_size})')
  if args.num_classes < 1:
    p.error(f'--num-classes must be a positive integer, got {args.num_classes}')
  if args.vs == 'torch':
    from jax_resnet import benchmark_torch
    problem = benchmark_torch.counterpart_problem(args.model)
    if problem:
      p.error(f'--vs torch: {problem}')
  if args.json is not None:
    problem = output_file_problem(args.json)
    if problem:
      p.error(f'--json {args.json}: {problem}; checked before the benchmark runs')
  return args


def output_file_problem(path: str):
  """Why a result file cannot be written at `path` (a folder, a missing or read-only parent),
  or None."""
  folder = os.path.dirname(os.path.abspath(path))
  if not path or os.path.isdir(path):
    return 'is a folder, not a file name'
  if not os.path.isdir(folder):
    return f'its folder {folder} does not exist; create it first'
  if not os.access(folder, os.W_OK | os.X_OK):
    return f'its folder {folder} is not writable'
  return None


def _progress(line):
  """What the benchmark is doing, on stderr (stdout keeps the result lines)."""
  print(line, file=sys.stderr, flush=True)


def main(argv=None, prog='python -m jax_resnet.benchmark'):
  argv = sys.argv[1:] if argv is None else argv
  if any(a == '--data' or a.startswith('--data=') for a in argv):  # the input pipeline's
    from jax_resnet import benchmark_data
    return benchmark_data.main(argv, prog)
  args = parse_args(argv, prog)
  results = {'machine': platform.processor() or platform.machine()}
  if args.memory:
    results['memory'] = benchmark_memory.run(args, args.device_memory_bytes)
    if args.json:
      with open(args.json, 'w') as f:
        json.dump(results, f, indent=2)
    return results
  if args.vs == 'torch':  # first, in a child process, before JAX takes the device's memory
    from jax_resnet import benchmark_torch
    _progress(f'torch: timing torchvision {args.model} in a child process')
    results['torch'] = benchmark_torch.bench_torch_in_child(args)
  results['jax'] = bench_jax(args)
  print(format_line(results['jax']))
  if args.vs == 'torch':
    print(format_line(results['torch']))
    results['ratio_jax_over_torch'] = (results['jax']['images_per_second'] /
                                       results['torch']['images_per_second'])
    print(f"jax / torch images per second: {results['ratio_jax_over_torch']:.2f}x")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


def format_line(r):
  extra = f", compile {r['compile_seconds']:.1f} s" if 'compile_seconds' in r else ''
  if 'mfu' in r:
    extra += f", MFU {100 * r['mfu']:.1f}%"
  return (f"{r['framework']:5s} {r['model']} {r['mode']} {r['dtype']} batch {r['batch_size']}: "
          f"{r['images_per_second']:.1f} img/s (min {r['images_per_second_min']:.1f}, max "
          f"{r['images_per_second_max']:.1f}), {r['step_ms']:.1f} ms/step{extra}")


if __name__ == '__main__':
  main()
