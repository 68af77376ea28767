"""Import time of the package face against Flax alone (docs/architecture.md, "Import cost").

Each module is imported in a fresh interpreter, timed inside it (interpreter start-up excluded),
the modules in turn; prints the median of --runs runs per module, in seconds.

    python scripts/import_time.py --runs 7 [--root OTHER_CHECKOUT]
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys

MODULES = ('flax.linen', 'jax_resnet.layers', 'jax_resnet')
_TIMER = ('import time\nstart = time.perf_counter()\nimport {module}\n'
          'print(time.perf_counter() - start)')


def import_seconds(module: str, root: pathlib.Path) -> float:
  env = dict(os.environ, PYTHONPATH=str(root))
  # cwd=root: `python -c` puts the working directory first on sys.path.
  out = subprocess.run([sys.executable, '-c', _TIMER.format(module=module)], env=env, cwd=root,
                       capture_output=True, text=True, check=True).stdout
  return float(out.split()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--runs', type=int, default=7)
  parser.add_argument('--root', type=pathlib.Path, help='the checkout to import (default: this '
                      "script's)")
  args = parser.parse_args()
  root = args.root or pathlib.Path(__file__).resolve().parent.parent
  runs = {module: [] for module in MODULES}
  for _ in range(args.runs):  # round-robin, so a change in the machine's load hits all alike
    for module in MODULES:
      runs[module].append(import_seconds(module, root))
  for module, times in runs.items():
    print(f'{module:20s} median {statistics.median(times):.3f} s '
          f'(min {min(times):.3f}, max {max(times):.3f}, {args.runs} runs)')


if __name__ == '__main__':
  main()
