"""`dataset='folder:PATH'`: a folder of images with one sub-folder per class, as torchvision's
`ImageFolder` reads it (class names sorted, class i = the i-th name; files found recursively
below each class folder, symbolic links followed; hidden files and folders left out).

    PATH/cat/1.jpg, PATH/dog/a.png, ...                  held-out split drawn here (stratified)
    PATH/train/cat/1.jpg, ..., PATH/val/cat/9.jpg, ...   the folder's own split

Files are chosen by extension (`IMAGE_EXTENSIONS`, any case); every chosen file's header is
opened before training (`check_image`: PIL's `verify`, a pixel count within PIL's limit, a
JPEG's end marker), so a bad file stops the run before it starts with its name, or is left out
with `skip_unreadable`. The listing and the split are plain values (`Listing`, `split_record`):
the trainer writes them into its workdir (`split.json`) and reads them back on resume, so a run
keeps its files whatever is added to the folder later. The listing lives in memory in every
process (about 100 bytes a file: millions of files are fine, not billions).
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import warnings

import numpy as np

from jax_resnet.data import sources as sources_lib
from jax_resnet.data.pixels import rgb_pixels, unit_grey
from jax_resnet.errors import DataError

PREFIX = 'folder:'
IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
SPLIT_FOLDERS = ('train', 'val')
HOLDOUT_FRACTION = 0.1  # of each class, when the folder has no val/ and holdout_size is 0
HOLDOUT_SEED = 0        # fixed: the held-out files never depend on config.seed
RECORD_VERSION = 1
_JPEG_TAIL = 4096       # bytes searched for a JPEG's end-of-image marker
_SHOWN = 3              # file names one error line shows


def is_folder(dataset) -> bool:
  return isinstance(dataset, str) and dataset.startswith(PREFIX)


def root_of(dataset: str) -> str:
  return os.path.expanduser(dataset[len(PREFIX):])


def _subfolders(path):
  return sorted(e.name for e in os.scandir(path)
                if not e.name.startswith('.') and e.is_dir(follow_symlinks=True))


def layout(dataset: str):
  """(train folder, val folder or None, class names) of `dataset`, or a DataError saying what
  the folder lacks."""
  root = root_of(dataset)
  if not os.path.isdir(root):
    raise DataError(f'dataset={dataset!r}: {root} is not a folder; pass the folder that holds '
                    'one sub-folder of images per class (folder:PATH).')
  subfolders = _subfolders(root)
  train, val = root, None
  if set(SPLIT_FOLDERS) <= set(subfolders):
    others = [s for s in subfolders if s not in SPLIT_FOLDERS]
    if others:
      raise DataError(f'{root} holds train/ and val/ beside other folders ({", ".join(others)}); '
                      'put every class folder inside train/ and val/, or remove train/ and '
                      'val/ to have a held-out split drawn.')
    train, val = os.path.join(root, 'train'), os.path.join(root, 'val')
  names = tuple(_subfolders(train))
  if len(names) < 2:
    found = f'only one ({names[0]}/)' if names else 'none'
    raise DataError(f'{train} must hold one sub-folder of images per class, at least two; it '
                    f'has {found}: a classifier needs two classes or more '
                    f'({train}/<class name>/<image>).')
  return train, val, names


def class_names(dataset: str) -> tuple:
  return layout(dataset)[2]


def _image_files(folder):
  """Sorted image files below `folder` (recursive, links followed), and how many others."""
  found, others = [], 0
  for directory, subdirs, files in os.walk(folder, followlinks=True):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
    for name in files:
      if name.startswith('.'):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.join(directory, name))
      else:
        others += 1
  return sorted(found), others


def _first_line(error):
  text = str(error).splitlines()[0] if str(error) else type(error).__name__
  return text if type(error).__name__ in text else f'{type(error).__name__}: {text}'


def check_image(path: str):
  """None when PIL reads `path`'s header as an image it can decode, else the reason: not an
  image, a header or chunk checksum PIL's `verify` refuses, more pixels than PIL's
  `MAX_IMAGE_PIXELS` (a decompression bomb), a JPEG without its end marker (truncated)."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      width, height = image.size
      limit = Image.MAX_IMAGE_PIXELS
      if limit and width * height > limit:
        return (f'it declares {width}x{height} pixels, more than the {limit} PIL allows '
                '(a decompression bomb?)')
      kind = image.format
      image.verify()
    if kind == 'JPEG':
      with open(path, 'rb') as f:
        f.seek(max(0, os.path.getsize(path) - _JPEG_TAIL))
        if b'\xff\xd9' not in f.read():
          return 'the JPEG is truncated (no end-of-image marker)'
  except Image.DecompressionBombError as error:
    return _first_line(error)
  except Image.UnidentifiedImageError:
    return 'not an image file PIL can read'
  except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
    return _first_line(error)
  return None


def _checked(root, entries):
  """[(relative path, label)] of `entries` PIL reads, and [(relative path, reason)] of the
  others; headers are read in threads (the work is mostly waiting for storage)."""
  from PIL import Image
  workers = min(32, 4 * (os.cpu_count() or 1))
  # The filter is process-wide, so it is set here, around the threads: check_image names the
  # images PIL warns about (more pixels than its limit) in its own words.
  with warnings.catch_warnings(), concurrent.futures.ThreadPoolExecutor(workers) as pool:
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)
    reasons = list(pool.map(lambda e: check_image(os.path.join(root, e[0])), entries))
  good = [e for e, reason in zip(entries, reasons) if reason is None]
  bad = [(e[0], reason) for e, reason in zip(entries, reasons) if reason is not None]
  return good, bad


@dataclasses.dataclass(frozen=True)
class Listing:
  """The files of one run: (path relative to the folder, label) pairs, and what was left out."""
  root: str
  class_names: tuple
  train: tuple
  eval: tuple
  skipped: tuple = ()      # (relative path, reason) of unreadable files left out
  held_out: bool = False   # eval drawn from the train folder (no val/)

  def record(self) -> dict:
    """The JSON of split.json."""
    return {'version': RECORD_VERSION, 'class_names': list(self.class_names),
            'held_out': self.held_out, 'train': [list(e) for e in self.train],
            'eval': [list(e) for e in self.eval]}


def _entries(folder, root, names, known=None):
  """[(path relative to root, label)] of the image files of each class folder of `folder`."""
  entries, others = [], 0
  for name in _subfolders(folder):
    if name not in (known or names):
      raise DataError(f'{os.path.join(folder, name)} is a class train/ does not have; every '
                      'val/ class folder needs its train/ folder of the same name.')
    files, ignored = _image_files(os.path.join(folder, name))
    others += ignored
    label = (known or names).index(name)
    entries += [(os.path.relpath(f, root), label) for f in files]
  return entries, others


def stratified_holdout(entries, num_classes, holdout_size=0):
  """(train, held out): per class a seeded random choice of HOLDOUT_FRACTION of its files (at
  least one where it has two), or, with holdout_size > 0, that many files in all, shared out
  in proportion to the class sizes (largest remainders)."""
  by_class = [[e for e in entries if e[1] == c] for c in range(num_classes)]
  sizes = np.array([len(c) for c in by_class], np.float64)
  if holdout_size > 0:
    if holdout_size >= len(entries):
      raise DataError(f'holdout_size={holdout_size} leaves no training images: the folder '
                      f'has {len(entries)}; use a smaller holdout_size (0: 10% of each class).')
    exact = sizes * holdout_size / sizes.sum()
    counts = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - counts), kind='stable')[:holdout_size - counts.sum()]
    counts[extra] += 1
  else:
    counts = np.where(sizes >= 2, np.maximum(1, np.round(sizes * HOLDOUT_FRACTION)), 0)
  train, held = [], []
  for label, files in enumerate(by_class):
    order = np.random.default_rng([HOLDOUT_SEED, label]).permutation(len(files))
    held += [files[i] for i in sorted(order[:int(counts[label])])]
    train += [files[i] for i in sorted(order[int(counts[label]):])]
  return train, held


def _refuse_unreadable(bad, root, what='cannot be read'):
  shown = '; '.join(f'{os.path.join(root, p)}: {r}' for p, r in bad[:_SHOWN])
  more = f' (and {len(bad) - _SHOWN} more)' if len(bad) > _SHOWN else ''
  raise DataError(f'{len(bad)} image file(s) {what}: {shown}{more}; remove or replace them, or '
                  'set --config.skip_unreadable=True to train without them.')


def _check_classes(listing):
  counts = np.bincount([e[1] for e in listing.train], minlength=len(listing.class_names))
  empty = [n for n, c in zip(listing.class_names, counts) if c == 0]
  if empty:
    skipped = f' ({len(listing.skipped)} unreadable file(s) skipped)' if listing.skipped else ''
    raise DataError(f'class folder(s) {", ".join(empty)} in {listing.root} hold no readable '
                    f'training image{skipped}; add images or remove the folder(s).')
  if not listing.eval:
    raise DataError(f'{listing.root} leaves no image to evaluate on (every class has a single '
                    'image); add images, or a val/ folder beside train/.')


def list_folder(dataset, holdout_size=0, skip_unreadable=False, record=None) -> Listing:
  """The checked Listing of `dataset`: from `record` (a split.json's dict) when given, else
  from the folder; unreadable files refused (DataError) or, with skip_unreadable, left out."""
  train_dir, val_dir, names = layout(dataset)
  root = root_of(dataset)
  if record is not None:
    return _from_record(dataset, record, skip_unreadable)
  entries, _ = _entries(train_dir, root, names)
  evals = _entries(val_dir, root, names, known=names)[0] if val_dir else None
  if not entries:
    raise DataError(f'the class folders of {train_dir} hold no image file (extensions '
                    f'{", ".join(IMAGE_EXTENSIONS)}).')
  entries, bad = _checked(root, entries)
  if evals:
    evals, bad_eval = _checked(root, evals)
    bad += bad_eval
  if bad and not skip_unreadable:
    _refuse_unreadable(bad, root)
  held_out = val_dir is None or holdout_size > 0
  if held_out:
    entries, evals = stratified_holdout(entries, len(names), holdout_size)
  listing = Listing(root, names, tuple(entries), tuple(evals or ()), tuple(bad), held_out)
  _check_classes(listing)
  return listing


def _from_record(dataset, record, skip_unreadable):
  """The Listing a split.json recorded, its files checked again (they may have changed)."""
  root = root_of(dataset)
  if not (isinstance(record, dict) and record.get('version') == RECORD_VERSION):
    raise DataError(f'the recorded split of {dataset!r} has an unknown format (version '
                    f'{record.get("version") if isinstance(record, dict) else None!r}); '
                    'use a new --workdir.')
  names = tuple(record['class_names'])
  parts = []
  for key in ('train', 'eval'):
    entries = [(str(p), int(label)) for p, label in record[key]]
    missing = [(p, 'it is gone') for p, _ in entries if not os.path.isfile(os.path.join(root, p))]
    if missing and not skip_unreadable:
      _refuse_unreadable(missing, root, 'recorded in the workdir\'s split.json are missing')
    good, bad = _checked(root, [e for e in entries if e[0] not in dict(missing)])
    if bad and not skip_unreadable:
      _refuse_unreadable(bad, root)
    parts.append((good, missing + bad))
  (train, bad_train), (evals, bad_eval) = parts
  listing = Listing(root, names, tuple(train), tuple(evals), tuple(bad_train + bad_eval),
                    bool(record.get('held_out')))
  _check_classes(listing)
  return listing


def read_record(path: str):
  """The dict of the split.json at `path`, None when there is none."""
  if not path or not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as error:
    raise DataError(f'{path} cannot be read ({_first_line(error)}); it records which files this '
                    'run trains and evaluates on: restore it, or use a new --workdir.') from None


def open_image(path: str):
  """The decoded image file at `path`: a PIL RGB image for 8-bit modes (the crop and resize
  work on it without a full-size array copy), else the float (H, W, 3) array of
  `pixels.rgb_pixels`; a DataError naming the file when it cannot be decoded (damaged after the
  header the listing checked)."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      if unit_grey(image) is None:
        image.load()
        return image if image.mode == 'RGB' else image.convert('RGB')
      return rgb_pixels(image)
  except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ...
    raise DataError(f'cannot decode image {path} ({_first_line(error)}); its header was '
                    'readable, so its data is damaged: remove or replace it and resume.') from None


class FolderSource:
  """Random access to (decoded image, label) of a list of files: grain's source, decoding in
  the worker that reads it."""

  def __init__(self, root, entries):
    self._root = root
    # bytes, one a byte per character: the listing is copied into every worker
    self._paths = np.array([os.fsencode(p) for p, _ in entries] or [b''],
                           dtype=np.bytes_)[:len(entries)]
    self._labels = np.array([label for _, label in entries], np.int32)

  def __len__(self):
    return len(self._labels)

  def __getitem__(self, index):
    path = os.path.join(self._root, os.fsdecode(self._paths[index]))
    return {'image': open_image(path), 'label': int(self._labels[index])}


def folder_sources(spec) -> 'sources_lib.Sources':
  """Sources of a DataSpec whose dataset is folder:PATH; `spec.split_record` (a split.json)
  is read when it exists."""
  listing = list_folder(spec.dataset, spec.holdout_size, spec.skip_unreadable,
                        read_record(spec.split_record))
  record = listing.record()
  digest = hashlib.sha256(json.dumps(record).encode()).hexdigest()[:12]
  return sources_lib.Sources(
      train=FolderSource(listing.root, listing.train),
      eval=FolderSource(listing.root, listing.eval), num_classes=len(listing.class_names),
      channels=3, cache_name=f'folder-{digest}', class_names=listing.class_names,
      split=record, skipped=listing.skipped)
