"""Accuracy and speed of the host input pipeline against the on-device path: trains
the same config with N seeds (0..N-1 by default) both ways and reports each run's test top-1 and
throughput, and their mean and standard deviation. A benchmark-style script, not a test.

    python scripts/compare_input_paths.py --seeds 5 --out runs/input_paths  # docs/benchmarks.md
    python scripts/compare_input_paths.py --seeds 5 -- --config configs/cifar10_resnet20.py

Arguments after `--` go to train.py unchanged. Writes OUT/input_paths.json.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(out, seed, device_data, extra):
  workdir = os.path.join(out, f'{"device" if device_data else "host"}_seed{seed}')
  command = [sys.executable, os.path.join(ROOT, 'train.py'), f'--workdir={workdir}',
             f'--config.seed={seed}', f'--config.device_data={device_data}',
             '--config.progress_bar=false'] + extra
  subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  return {'seed': seed, 'top1': summary['final_eval_top1'],
          'images_per_second': summary['train_images_per_second'],
          'wall_seconds': summary['wall_seconds']}


def describe(runs):
  stats = {}
  for key in ('top1', 'images_per_second', 'wall_seconds'):
    values = np.array([r[key] for r in runs])
    stats[key] = {'mean': float(values.mean()), 'std': float(values.std(ddof=1))
                  if len(values) > 1 else 0.0}
  return stats


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--seeds', type=int, default=5)
  parser.add_argument('--first-seed', type=int, default=0)
  parser.add_argument('--out', default=os.path.join('runs', 'input_paths'))
  parser.add_argument('train_args', nargs='*', help='after --: passed to train.py')
  args = parser.parse_args()
  if args.seeds < 1:
    parser.error('--seeds must be at least 1')
  results = {}
  for name, device_data in (('host', False), ('device', True)):
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = [run(args.out, seed, device_data, args.train_args) for seed in seeds]
    results[name] = {'runs': runs, **describe(runs)}
    each = ', '.join(f"{r['top1']:.4f}" for r in runs)
    print(f"{name:6s} top-1 {results[name]['top1']['mean']:.4f} +- "
          f"{results[name]['top1']['std']:.4f} over {args.seeds} seeds "
          f"({each}); "
          f"{results[name]['images_per_second']['mean']:.0f} img/s, "
          f"{results[name]['wall_seconds']['mean']:.1f} s per run", flush=True)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'input_paths.json'), 'w') as f:
    json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
