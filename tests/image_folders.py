"""Image folders the tests draw: one sub-folder per class, each image a shape whose kind and
colour name its class on a noisy background, written as JPEG or PNG; and broken files."""

import os

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('circle', 'square', 'triangle')
COLOURS = {'circle': (220, 40, 40), 'square': (40, 200, 60), 'triangle': (50, 70, 230)}


def shape_image(kind, rng, size=40):
  """A size x size RGB image of one `kind` of shape at a random place and scale."""
  background = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
  image = Image.fromarray(background)
  draw = ImageDraw.Draw(image)
  extent = int(rng.integers(size // 2, size - 4))
  left, top = (int(v) for v in rng.integers(0, size - extent, 2))
  box = (left, top, left + extent, top + extent)
  colour = COLOURS[kind]
  if kind == 'circle':
    draw.ellipse(box, fill=colour)
  elif kind == 'square':
    draw.rectangle(box, fill=colour)
  else:
    draw.polygon([(left, top + extent), (left + extent, top + extent),
                  (left + extent // 2, top)], fill=colour)
  return image


def make_folder(root, per_class=10, classes=CLASSES, seed=0, size=40, formats=('JPEG', 'PNG')):
  """root/<class>/<i>.jpg|png for each class; returns the written paths, sorted."""
  rng = np.random.default_rng(seed)
  paths = []
  for kind in classes:
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    for i in range(per_class):
      fmt = formats[i % len(formats)]
      path = os.path.join(root, kind, f'{i:03d}.' + ('jpg' if fmt == 'JPEG' else fmt.lower()))
      shape_image(kind if kind in COLOURS else CLASSES[hash(kind) % 3], rng, size).save(path, fmt)
      paths.append(path)
  return sorted(paths)


def write_not_an_image(path):
  with open(path, 'w') as f:
    f.write('<html>this was a web page, saved as .jpg</html>\n')


def write_truncated_jpeg(path, rng_seed=1):
  """A real JPEG cut after 60% of its bytes."""
  image = shape_image('circle', np.random.default_rng(rng_seed), 64)
  image.save(path, 'JPEG', quality=95)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * 0.6)])


def write_decompression_bomb(path):
  """A small PNG whose header declares more pixels than PIL's limit allows (a 1-bit image
  of 12000 x 12000: 18 MB once decoded, a few kB on disk)."""
  Image.new('1', (12_000, 12_000)).save(path, 'PNG', optimize=True)
