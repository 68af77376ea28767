"""Where the train step's device time goes: a jax.profiler trace of a few steps of the
benchmark's train step, and its events summed by op and by category (collective,
convolution, matrix product, copy/transpose, other fusion, other) plus the device's idle time
in the window.

    python scripts/gpu_profile.py --model resnet50 --batch-size 256 --dtype bfloat16 \\
        [--stem-conv auto] [--steps 5] [--trace-dir DIR] [--json FILE]

The trace (open DIR in TensorBoard's profile plugin or perfetto_trace.json.gz in
ui.perfetto.dev) stays in --trace-dir. Sums read the Perfetto JSON that jax.profiler writes:
on a GPU, the device processes ('/device:GPU:N'); where there are none (CPU), every event
named like an XLA op. Categories come from the op or kernel name, so check the top-ops list.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re

import jax
import numpy as np

from jax_resnet import benchmark
from jax_resnet.config import boundary
from jax_resnet.stems import STEM_CONVS

# First match wins: a transpose or copy fusion is a layout change, not arithmetic.
CATEGORIES = (
    ('collective', re.compile(r'all-reduce|all-gather|reduce-scatter|collective|nccl')),
    ('convolution', re.compile(r'conv|cudnn|xmma|implicit|dgrad|wgrad|fprop')),
    ('matmul', re.compile(r'gemm|dot|cublas|matmul')),
    ('copy/transpose', re.compile(r'copy|transpose|bitcast')),
    ('fusion', re.compile(r'fusion|reduce|select|scatter')),
)


def category(name: str) -> str:
  lower = name.lower()
  return next((label for label, pattern in CATEGORIES if pattern.search(lower)), 'other')


def train_step(args):
  """The benchmark's placed-batch train step: (run, state) with run() doing one step."""
  bench_args = benchmark.parse_args(
      ['--model', args.model, '--batch-size', str(args.batch_size), '--image-size',
       str(args.image_size), '--num-classes', str(args.num_classes), '--dtype', args.dtype,
       '--stem-conv', args.stem_conv])
  runner, state = benchmark.prepare(bench_args)
  shape = (args.image_size, args.image_size, 3)
  holder = {'state': state}
  rng = np.random.default_rng(0)
  batch = runner.place_batch({
      'image': rng.normal(size=(args.batch_size,) + shape).astype(np.float32),
      'label': rng.integers(0, args.num_classes, args.batch_size).astype(np.int32),
      'mask': np.ones(args.batch_size, bool)})

  def run():
    holder['state'], metrics = runner.train_step(holder['state'], batch, jax.random.key(1))
    return metrics
  return run


def load_events(trace_dir: str):
  """(complete events, {pid: process name}, {(pid, tid): thread name}) of the newest trace."""
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True) +
                 glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise SystemExit(f'no Perfetto trace under {trace_dir}')
  with gzip.open(paths[-1]) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  processes, threads = {}, {}
  for e in events:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      processes[e['pid']] = e['args']['name']
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e['pid'], e.get('tid'))] = e['args']['name']
  complete = [e for e in events if e.get('ph') == 'X' and 'dur' in e]
  return complete, processes, threads


def device_events(events, processes, threads):
  """The events that are device work: GPU/TPU processes' op lines (kernels when there are no
  op lines), or on CPU the events whose names look like XLA ops."""
  devices = {pid for pid, name in processes.items() if '/device:' in name}
  if devices:
    op_lines = {key for key, name in threads.items() if key[0] in devices and 'Ops' in name}
    keep = op_lines or {key for key in threads if key[0] in devices}
    return [e for e in events if (e['pid'], e.get('tid')) in keep or (
        not op_lines and e['pid'] in devices)]
  xla_name = re.compile(r'^[a-z_\-]+(\.\d+)+$|fusion|convolution|custom-call|ynn')
  return [e for e in events if xla_name.search(e['name'])]


def idle_us(events):
  """Time in the window of `events` (first start to last end) that no event covers."""
  spans = sorted((e['ts'], e['ts'] + e['dur']) for e in events)
  busy, end = 0.0, -np.inf
  for start, stop in spans:
    if stop > end:
      busy += stop - max(start, end)
      end = stop
  return spans[-1][1] - spans[0][0] - busy if spans else 0.0


def summarise(events, steps_traced: int, top: int):
  by_op = collections.Counter()
  for e in events:
    by_op[re.sub(r'\.\d+$', '', e['name'])] += e['dur']
  by_category = collections.Counter()
  for name, us in by_op.items():
    by_category[category(name)] += us
  by_category['idle'] = idle_us(events)
  per_step = lambda us: us / steps_traced / 1e3
  return {'steps_traced': steps_traced,
          'ms_per_step_by_category': {k: per_step(v) for k, v in by_category.most_common()},
          'top_ops_ms_per_step': [(name, category(name), per_step(us))
                                  for name, us in by_op.most_common(top)]}


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='resnet50')
  p.add_argument('--batch-size', type=int, default=256)
  p.add_argument('--image-size', type=int, default=224)
  p.add_argument('--num-classes', type=int, default=1000)
  p.add_argument('--dtype', default='bfloat16', choices=['float32', 'bfloat16'])
  p.add_argument('--stem-conv', default='auto', choices=('auto',) + STEM_CONVS)
  p.add_argument('--steps', type=int, default=5, help='traced steps (after 3 untraced)')
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--trace-dir', default='/tmp/jax_trace')
  p.add_argument('--json')
  args = p.parse_args()
  run = train_step(args)
  for _ in range(3):  # compile and warm up outside the trace
    jax.block_until_ready(run())
  with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      jax.block_until_ready(run())
  events, processes, threads = load_events(args.trace_dir)
  result = summarise(device_events(events, processes, threads), args.steps, args.top)
  result.update(model=args.model, batch_size=args.batch_size, dtype=args.dtype,
                stem_conv=boundary.stem_conv(args.stem_conv, args.model, jax.default_backend()),
                device=jax.devices()[0].device_kind, processes=sorted(set(processes.values())))
  print(f"{args.model} {args.dtype} batch {args.batch_size} stem_conv={result['stem_conv']} on "
        f"{result['device']}, ms per step by category:")
  for name, ms in result['ms_per_step_by_category'].items():
    print(f'  {name:16s} {ms:9.2f}')
  print('top ops, ms per step:')
  for name, label, ms in result['top_ops_ms_per_step']:
    print(f'  {ms:9.3f}  {label:15s} {name}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
