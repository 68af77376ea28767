"""Host input pipeline throughput on real JPEG bytes: decode + Inception crop/flip + resize +
normalise, with the trainer's own pieces (`transforms.Preprocess`, `TrainMap`, grain through
`pipeline._to_iterator`), per core and in worker processes.

    python scripts/jpeg_pipeline.py --images 2000 --workers 16 [--dir /tmp/jpegs] [--json F]

The images are generated here (no dataset is read): 500x375 RGB JPEGs, quality 90, of smooth
colour fields plus noise, so they decode like photographs of ImageNet's median size rather
than like flat or pure-noise images. One process decodes every image once (`per_core`), then
grain runs `--workers` processes over batches of `--batch-size` for `--seconds` (`total`).
"""

import argparse
import json
import os
import pathlib
import time
import types

import numpy as np
from PIL import Image

from jax_resnet.data import pipeline, transforms


def write_jpegs(directory: pathlib.Path, count: int, seed: int = 0):
  """`count` 500x375 JPEGs in `directory` (kept if already there); returns their paths."""
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  noise = rng.normal(0, 12, (375, 500, 3)).astype(np.int16)  # drawn once, shifted per image
  paths = []
  for i in range(count):
    path = directory / f'{i:05d}.jpg'
    if not path.exists():
      coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
      field = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.BICUBIC), np.int16)
      shifted = np.roll(noise, tuple(rng.integers(0, 375, 2)), axis=(0, 1))
      pixels = np.clip(field + shifted, 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(path, quality=90)
    paths.append(str(path))
  return paths


class JpegFiles:
  """A grain source of {'image': JPEG bytes, 'label'}: paths only, so it pickles small."""

  def __init__(self, paths):
    self.paths = list(paths)

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    with open(self.paths[index], 'rb') as f:
      return {'image': f.read(), 'label': index % 1000}


def decoder_name():
  """Which library `transforms.decode` uses here (it takes the first importable)."""
  for name in ('simplejpeg', 'cv2'):
    try:
      __import__(name)
      return name
    except ImportError:
      pass
  return 'PIL'


def preprocess(size: int):
  normalizer = transforms.Normalizer(np.float32(transforms.IMAGENET_MEAN),
                                     np.float32(transforms.IMAGENET_STD))
  return transforms.Preprocess(size, 'inception', 0, normalizer)


def per_core(source, pre):
  """Images per second of one process running the train transform over every image."""
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for i in range(len(source)):
    pre(source[i], rng)
  return len(source) / (time.perf_counter() - start)


def total(source, pre, workers: int, batch_size: int, seconds: float):
  """Images per second out of grain with `workers` processes, after the first batch."""
  import grain
  ds = grain.MapDataset.source(source).shuffle(seed=0).repeat(None)
  ds = ds.random_map(transforms.TrainMap(pre), seed=1).batch(batch_size)
  config = types.SimpleNamespace(num_workers=workers, prefetch_batches=2)
  iterator = pipeline._to_iterator(ds, config)  # the trainer's grain setup
  batch = next(iterator)
  batches, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    batch = next(iterator)
    batches += 1
  elapsed = time.perf_counter() - start
  if hasattr(iterator, 'close'):
    iterator.close()
  return batches * batch_size / elapsed, batch['image'].shape


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--images', type=int, default=2000)
  parser.add_argument('--dir', default='/tmp/jpeg_pipeline')
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--workers', type=int, default=os.cpu_count())
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--seconds', type=float, default=20.0)
  parser.add_argument('--json')
  args = parser.parse_args()
  start = time.perf_counter()
  source = JpegFiles(write_jpegs(pathlib.Path(args.dir), args.images))
  generate = time.perf_counter() - start
  pre = preprocess(args.size)
  result = {'images': len(source), 'generate_seconds': generate,
            'mean_jpeg_bytes': float(np.mean([os.path.getsize(p) for p in source.paths])),
            'decoder': decoder_name(),
            'per_core_images_per_second': per_core(source, pre)}
  result['workers'] = args.workers
  result['total_images_per_second'], shape = total(source, pre, args.workers, args.batch_size,
                                                   args.seconds)
  result['batch_shape'] = list(shape)
  print(json.dumps(result, indent=1))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
  main()
