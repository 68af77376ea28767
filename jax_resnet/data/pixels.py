"""A PIL image's pixels as the pipelines and `predict` read them, in any PIL mode.

8-bit modes (L, P, RGB, RGBA, CMYK, LA, YCbCr, 1, ...) go through `convert('RGB')`, as
torchvision's ImageFolder loader does; modes whose pixels are wider than 8 bits would be clipped
at 255 by that conversion (a 16-bit image turns white, a [0, 1] float image black), so they are
read as a grey plane in [0, 1] instead (`unit_grey`).
"""

import numpy as np

# Modes whose pixels are not 8 bits and how each maps to [0, 1].
SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N')


def unit_grey(image):
  """None for 8-bit modes (convert('RGB') is exact); else the grey plane as a PIL 'F' image in
  [0, 1]: 16-bit modes divided by 65535, 32-bit integers ('I') likewise when they lie in
  [0, 65535] (PIL reads 16-bit files as 'I' too), floats ('F') taken as [0, 1]. Values outside
  the mode's range raise ValueError: no scale would be right for them."""
  from PIL import Image
  if image.mode not in SIXTEEN_BIT_MODES + ('I', 'F'):
    return None
  values = np.asarray(image, np.float64)
  low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
  if image.mode == 'F':
    if not (np.isfinite(low) and np.isfinite(high) and 0.0 <= low and high <= 1.0):
      raise ValueError(f'its float pixels span {low:g}..{high:g}; float images are read as '
                       'brightness in [0, 1]: rescale it to [0, 1] or save it in 8 or 16 bits')
    scale = 1.0
  else:
    if low < 0 or high > 65535:
      raise ValueError(f'its {image.mode} integer pixels span {low:g}..{high:g}, beyond 16 '
                       'bits, so no brightness scale is known: save it in 8 or 16 bits')
    scale = 65535.0
  return Image.fromarray((values / scale).astype(np.float32))


def rgb_pixels(image) -> np.ndarray:
  """(H, W, 3) pixels of a PIL image (a GIF's or TIFF's current frame, the first after open):
  uint8 for 8-bit modes, float32 in [0, 1] for the wider ones (grey repeated)."""
  grey = unit_grey(image)
  if grey is None:
    return np.asarray(image.convert('RGB'))
  return np.repeat(np.asarray(grey, np.float32)[..., None], 3, axis=-1)
