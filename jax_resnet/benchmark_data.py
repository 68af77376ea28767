"""Input-pipeline throughput on a folder of images: `jax-resnet benchmark --data folder:PATH`.

    jax-resnet benchmark --data folder:./photos [--image-size 224] [--batch-size 32]
        [--workers 2] [--batches 40] [--warmup 4] [--no-torch] [--json FILE]

Times the trainer's training input (`data.train_iterator` of a `folder:` DataSpec: decoding,
RandomResizedCrop + horizontal flip, normalisation and batching in grain worker processes) and,
in the same run with the same transforms, batch size and worker count, torchvision's
`ImageFolder` + `DataLoader` (skipped when torch is not installed, or with --no-torch). Prints
decoded and augmented images per second in total and per worker; the header check of the
listing (every file opened once before training) is timed apart.
"""

import argparse
import json
import os
import platform
import sys
import time

from jax_resnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def parse_args(argv, prog):
  p = argparse.ArgumentParser(prog=f'{prog} --data', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--data', required=True, help='folder:PATH, one sub-folder of images per class')
  p.add_argument('--image-size', type=int, default=224, help='crop side fed to the model')
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--workers', type=int, default=2, help='worker processes of both pipelines')
  p.add_argument('--batches', type=int, default=40, help='timed batches')
  p.add_argument('--warmup', type=int, default=4, help='untimed batches first (workers start)')
  p.add_argument('--rounds', type=int, default=1,
                 help='alternate the two pipelines this many times (the median is reported): '
                      'on a shared machine the load changes between runs')
  p.add_argument('--no-torch', action='store_true', help='time our pipeline only')
  p.add_argument('--json', help='write the results to this file')
  args = p.parse_args(argv)
  if min(args.image_size, args.batch_size, args.batches, args.rounds) < 1 or min(args.workers,
                                                                    args.warmup) < 0:
    p.error('--image-size, --batch-size, --batches and --rounds must be positive, --workers and '
            '--warmup >= 0')
  if not args.data.startswith('folder:'):
    p.error(f'--data takes folder:PATH, got {args.data!r}')
  return args


def _rate(iterator, args):
  """(images per second over the timed batches, seconds) after the warm-up batches."""
  for _ in range(args.warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(args.batches):
    next(iterator)
  seconds = time.perf_counter() - start
  return args.batches * args.batch_size / seconds, seconds


def bench_ours(args):
  from jax_resnet import data
  spec = data.DataSpec(dataset=args.data, image_size=args.image_size, augment='inception',
                       normalize='mean_std', batch_size=args.batch_size,
                       eval_batch_size=args.batch_size, num_workers=args.workers)
  start = time.perf_counter()
  info = data.dataset_info(spec)  # lists the folder and checks every file's header
  check_seconds = time.perf_counter() - start
  files = info.num_train + info.num_eval + len(info.skipped)
  iterator = data.train_iterator(spec)
  try:
    rate, seconds = _rate(iterator, args)
  finally:
    iterator.close()
  return {'framework': 'jax_resnet (grain)', 'images_per_second': rate, 'seconds': seconds,
          'files': files, 'header_check_seconds': check_seconds,
          'header_check_ms_per_file': 1e3 * check_seconds / max(1, files)}


def bench_torch(args):
  import torch
  from torchvision import datasets, transforms
  transform = transforms.Compose([
      transforms.RandomResizedCrop(args.image_size), transforms.RandomHorizontalFlip(),
      transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
  folder = datasets.ImageFolder(os.path.expanduser(args.data[len('folder:'):]), transform)
  loader = torch.utils.data.DataLoader(
      folder, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
      drop_last=True, persistent_workers=args.workers > 0,
      generator=torch.Generator().manual_seed(0))

  def batches():
    while True:
      yield from loader

  rate, seconds = _rate(batches(), args)
  return {'framework': f'torchvision {__import__("torchvision").__version__} ImageFolder',
          'images_per_second': rate, 'seconds': seconds}


def _line(result, workers):
  per_worker = result['images_per_second'] / max(1, workers)
  return (f"{result['framework']:38s} {result['images_per_second']:8.1f} img/s, "
          f"{per_worker:7.1f} img/s per worker")


def _median_of(runs):
  """The run with the median rate (the lower middle one of an even count), with every rate."""
  ordered = sorted(runs, key=lambda r: r['images_per_second'])
  return dict(ordered[(len(ordered) - 1) // 2],
              all_images_per_second=[r['images_per_second'] for r in runs])


def main(argv, prog='python -m jax_resnet.benchmark'):
  args = parse_args(argv, prog)
  from jax_resnet.errors import UserError
  results = {'machine': platform.processor() or platform.machine(), 'cpus': os.cpu_count(),
             'data': args.data, 'image_size': args.image_size, 'batch_size': args.batch_size,
             'workers': args.workers, 'rounds': args.rounds}
  try:
    import torchvision  # noqa: F401
    with_torch = not args.no_torch
  except ImportError:
    with_torch = False
  ours, torch = [], []
  for _ in range(args.rounds):
    try:
      ours.append(bench_ours(args))
    except UserError as error:
      print(f'benchmark: error: {error}', file=sys.stderr)
      return 2
    print(_line(ours[-1], args.workers), file=sys.stderr, flush=True)
    if with_torch:
      torch.append(bench_torch(args))
      print(_line(torch[-1], args.workers), file=sys.stderr, flush=True)
  first = ours[0]  # the later rounds find the listing cached
  results['ours'] = dict(_median_of(ours), **{k: first[k] for k in (
      'files', 'header_check_seconds', 'header_check_ms_per_file')})
  ours = results['ours']
  print(f"header check: {ours['files']} files in {ours['header_check_seconds']:.2f} s "
        f"({ours['header_check_ms_per_file']:.3f} ms a file)")
  print(_line(ours, args.workers))
  if with_torch:
    results['torch'] = _median_of(torch)
    print(_line(results['torch'], args.workers))
    results['ratio_ours_over_torch'] = (ours['images_per_second'] /
                                        results['torch']['images_per_second'])
    print(f"ours / torch images per second: {results['ratio_ours_over_torch']:.2f}x"
          + (f' (medians of {args.rounds} alternating rounds)' if args.rounds > 1 else ''))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return 0
