"""Our .npz weights files: '/'-joined names, an optional weight-tag member, and every member's
declared shape read from its header before any array is read."""

import os
from typing import Mapping, NamedTuple, Optional

import jax
import numpy as np

from jax_resnet.weights.trees import WeightsFileError, first_line, flatten

TAG_MEMBER = '__tag__'  # an .npz member naming the weight tag (jax_resnet.weights.tags)
MAX_TAG_CHARACTERS = 256


def save_npz(path, variables: Mapping, tag: Optional[str] = None) -> str:
  """Writes {'params', 'batch_stats'} as an .npz of '/'-joined names ('params/head/kernel');
  bfloat16 leaves are stored as float32. `tag` (a weight tag, e.g. 'resnet50.tv2_in1k') is
  recorded so predict uses its preprocessing. Returns the path written ('.npz' appended if
  missing, as numpy does)."""
  path = os.fspath(path)
  if not path.endswith('.npz'):
    path += '.npz'
  flat = {}
  for name, value in flatten(jax.device_get(variables)).items():
    array = np.asarray(value)
    flat[name] = array.astype(np.float32) if array.dtype.name == 'bfloat16' else array
  if tag is not None:
    from jax_resnet.weights.tags import get_tag
    flat[TAG_MEMBER] = np.array(get_tag(tag).name)  # a known tag, as a unicode array
  np.savez(path, **flat)
  return path


def read_tag(path) -> Optional[str]:
  """The weight tag an .npz records (save_npz(tag=...)), else None."""
  path = os.fspath(path)
  if not (path.endswith('.npz') and os.path.isfile(path)):
    return None
  try:
    npz_headers(path)  # every member's header, the tag's included, before the tag is read
  except WeightsFileError as error:
    if getattr(error, 'member', None) == TAG_MEMBER:
      raise
    return None  # load() reports an unreadable file in full
  with np.load(path, allow_pickle=False) as data:
    return str(data[TAG_MEMBER]) if TAG_MEMBER in data.files else None


class Declared(NamedTuple):
  shape: tuple
  dtype: np.dtype


def npz_headers(path: str) -> dict:
  """name -> the shape and dtype each .npy member declares, read from the headers alone (a
  small compressed member can declare gigabytes). A member whose data is shorter than its
  declared size is refused."""
  import zipfile
  declared = {}
  try:
    with zipfile.ZipFile(path) as archive:
      for info in archive.infolist():
        with archive.open(info) as member:
          version = np.lib.format.read_magic(member)
          read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                         else np.lib.format.read_array_header_2_0)
          shape, _, dtype = read_header(member)
          header_size = member.tell()
        name = info.filename[:-4] if info.filename.endswith('.npy') else info.filename
        if name == TAG_MEMBER and not (shape == () and dtype.kind == 'U'
                                       and dtype.itemsize <= 4 * MAX_TAG_CHARACTERS):
          error = WeightsFileError(
              f'{path}: {name} declares shape {shape} of {dtype}, not one string of at most '
              f'{MAX_TAG_CHARACTERS} characters (what save_npz writes); the file is crafted or '
              'not ours.')
          error.member = name
          raise error
        if name == TAG_MEMBER:
          continue
        needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not dtype.hasobject and info.file_size - header_size < needed:
          raise WeightsFileError(
              f'{path}: {name} declares shape {shape} ({needed} bytes) but holds '
              f'{info.file_size - header_size} bytes; the file is truncated or crafted.')
        declared[name] = Declared(tuple(shape), dtype)
  except WeightsFileError:
    raise
  except Exception as error:  # zipfile and numpy header errors alike
    raise WeightsFileError(f'cannot read {path} as .npz ({first_line(error)}); the file is '
                           'corrupt or not an .npz archive.') from None
  return declared


def read_npz(path: str) -> dict:
  try:
    with np.load(path, allow_pickle=False) as data:
      return {name: data[name] for name in data.files if name != TAG_MEMBER}
  except Exception as error:  # zipfile, pickle and value errors alike
    raise WeightsFileError(f'cannot read {path} as .npz ({first_line(error)}); the file is '
                           'corrupt or not an .npz archive.') from None
