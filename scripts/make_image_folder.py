"""Writes a folder of ImageNet-sized JPEGs for `jax-resnet benchmark --data folder:PATH`
(docs/benchmarks.md): PATH/class_<k>/<i>.jpg, each image smooth random colour fields with
noise and drawn shapes (photo-like sizes once compressed: tens of kB at 500x375).

    python scripts/make_image_folder.py /tmp/imagefolder --images 500 --classes 5 \
        --size 500x375
"""

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like(rng, width, height):
  coarse = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
  image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
  pixels = np.asarray(image, np.int16) + rng.integers(-20, 21, (height, width, 3))
  image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(3, 9))):
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    r = int(rng.integers(10, min(width, height) // 3))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
  return image.filter(ImageFilter.GaussianBlur(0.6))


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('root')
  p.add_argument('--images', type=int, default=500)
  p.add_argument('--classes', type=int, default=5)
  p.add_argument('--size', default='500x375', help='WIDTHxHEIGHT')
  p.add_argument('--quality', type=int, default=90)
  args = p.parse_args()
  width, height = (int(v) for v in args.size.split('x'))
  rng = np.random.default_rng(0)
  for i in range(args.images):
    folder = os.path.join(args.root, f'class_{i % args.classes}')
    os.makedirs(folder, exist_ok=True)
    photo_like(rng, width, height).save(os.path.join(folder, f'{i:05d}.jpg'),
                                        quality=args.quality)


if __name__ == '__main__':
  main()
