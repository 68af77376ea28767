"""Long-run stability: trains the default config for many steps and records that
host memory (RSS) and step time stay flat. A benchmark-style script, not a test.

    python scripts/soak.py --steps 20000 --out runs/soak        # wall time: docs/training.md

Writes OUT/soak.json: RSS samples over time, throughput per log interval, and the ratios of
the last tenth to the first tenth (after the first interval, which holds the compile).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps', type=int, default=20_000)
  parser.add_argument('--out', default=os.path.join('runs', 'soak'))
  parser.add_argument('--sample-seconds', type=float, default=5.0)
  args = parser.parse_args()
  workdir = os.path.join(args.out, 'workdir')
  os.makedirs(args.out, exist_ok=True)
  command = [sys.executable, os.path.join(ROOT, 'train.py'), f'--workdir={workdir}',
             f'--config.num_train_steps={args.steps}', '--config.log_every_steps=100',
             '--config.eval_every_steps=2000', '--config.checkpoint_every_steps=2000',
             '--config.progress_bar=false']
  start = time.time()
  proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
  rss = []
  while proc.poll() is None:
    try:
      rss.append((time.time() - start, psutil.Process(proc.pid).memory_info().rss))
    except psutil.NoSuchProcess:
      break
    time.sleep(args.sample_seconds)
  if proc.returncode != 0:
    sys.exit(f'training failed with exit code {proc.returncode}')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rates = [r['images_per_second'] for r in map(json.loads, f) if r['split'] == 'train']
  report = summarise(args.steps, time.time() - start, rss, rates[1:])
  with open(os.path.join(args.out, 'soak.json'), 'w') as f:
    json.dump(report, f, indent=2)
  print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, indent=2))


def summarise(steps, seconds, rss, rates):
  tenth = max(1, len(rates) // 10)
  memory = [m for _, m in rss]
  steady = memory[len(memory) // 10:] or memory
  return {
      'steps': steps, 'wall_seconds': seconds,
      'rss_mb_first_steady': steady[0] / 2**20, 'rss_mb_last': memory[-1] / 2**20,
      'rss_mb_max': max(memory) / 2**20,
      'rss_growth_last_over_first_steady': memory[-1] / steady[0],
      'images_per_second_first_tenth': float(np.median(rates[:tenth])),
      'images_per_second_last_tenth': float(np.median(rates[-tenth:])),
      'throughput_last_over_first': float(np.median(rates[-tenth:]) / np.median(rates[:tenth])),
      'rss_samples': rss, 'images_per_second': rates,
  }


if __name__ == '__main__':
  main()
