"""Times the folder listing's header check (docs/training.md, "Training on a folder of
images"): 1,000 small JPEGs drawn by tests/image_folders.py, listed three times.

    PYTHONPATH=. python scripts/time_header_check.py [--root /tmp/small1000]
"""

import argparse
import glob
import os
import sys
import time

from PIL import Image

from jax_resnet.data import folder

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'tests'))
from image_folders import make_folder  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--root', default='/tmp/small1000')
  args = p.parse_args()
  if not os.path.isdir(args.root):
    make_folder(args.root, per_class=250, classes=('a', 'b', 'c', 'd'), size=64,
                formats=('JPEG',))
  files = sorted(glob.glob(os.path.join(args.root, '*', '*.jpg')))
  size = sum(map(os.path.getsize, files)) // len(files)
  print(f'{len(files)} files, {size} bytes each on average')
  for _ in range(3):
    start = time.perf_counter()
    folder.list_folder(f'folder:{args.root}')
    listed = time.perf_counter() - start
    start = time.perf_counter()
    for f in files:
      folder.check_image(f)
    checked = time.perf_counter() - start
    start = time.perf_counter()
    for f in files:
      with Image.open(f) as image:
        image.load()
    decoded = time.perf_counter() - start
    print(f'list_folder {listed:.3f} s; check_image on one thread {checked:.3f} s; '
          f'full decode {decoded:.3f} s')


if __name__ == '__main__':
  main()
