"""safetensors files read by this library: the JSON header first (every name, shape and dtype,
and each tensor's extent within the data), then the tensors, through safetensors' numpy API or,
for bfloat16, our own reader of the format (as float32)."""

import json
import os
from typing import Optional

import numpy as np

from jax_resnet.weights.trees import Shape, WeightsFileError, first_line


def read_safetensors(path: str) -> dict:
  """name -> numpy array, through safetensors' numpy API (no torch); bfloat16 files through
  our own reader of the format, as float32 (older safetensors' numpy API has no bfloat16).
  Every tensor's extent is checked against its header first: a file whose data is shorter
  than its header declares is refused."""
  import safetensors.numpy
  header = _safetensors_header(path)
  _check_extents(path, header)
  try:
    if any(info.get('dtype') == 'BF16' for info in header.values() if isinstance(info, dict)):
      return _read_safetensors_raw(path, header)
    return dict(safetensors.numpy.load_file(path))
  except WeightsFileError:
    raise
  except Exception as error:  # safetensors raises its own untyped errors
    raise WeightsFileError(f'cannot read {path} as safetensors ({first_line(error)}); the '
                           'file is corrupt or not a safetensors file.') from None


def safetensors_header_shapes(path: str) -> dict:
  """name -> Shape of every tensor a safetensors file declares, from its JSON header alone
  (the format: 8 bytes of little-endian length, then the JSON); the data is not read."""
  return {name: Shape(tuple(info['shape']))
          for name, info in _safetensors_header(path).items() if name != '__metadata__'}


def _safetensors_header(path: str) -> dict:
  """The format's JSON header, each entry checked to be a tensor's (dtype, shape, offsets)."""
  try:
    with open(path, 'rb') as f:
      size = int.from_bytes(f.read(8), 'little')
      if size > os.path.getsize(path) - 8:
        raise ValueError(f'a header of {size} bytes in a file of {os.path.getsize(path)}')
      header = json.loads(f.read(size))
    if not isinstance(header, dict):
      raise ValueError('the header is not a JSON object')
    for name, info in header.items():
      if name != '__metadata__' and not (
          isinstance(info, dict) and isinstance(info.get('dtype'), str)
          and isinstance(info.get('shape'), list)
          and all(isinstance(d, int) and d >= 0 for d in info['shape'])
          and isinstance(info.get('data_offsets'), list) and len(info['data_offsets']) == 2
          and all(isinstance(d, int) and d >= 0 for d in info['data_offsets'])):
        raise ValueError(f'{name}: not a tensor entry (dtype, shape, data_offsets)')
    return header
  except (OSError, ValueError) as error:  # json's errors are ValueErrors
    raise WeightsFileError(f'cannot read {path} as safetensors ({first_line(error)}); the '
                           'file is corrupt or not a safetensors file.') from None


_DTYPES = {'BF16': 'bfloat16', 'F16': np.float16, 'F32': np.float32, 'F64': np.float64,
           'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U64': np.uint64,
           'U32': np.uint32, 'U16': np.uint16, 'U8': np.uint8, 'BOOL': np.bool_}


def _dtype(path: str, name: str, dtype: str):
  import ml_dtypes
  if dtype not in _DTYPES:
    raise WeightsFileError(f'{path}: {name} holds {dtype} values, which this reader does not '
                           'know; weights must be floating point.')
  return ml_dtypes.bfloat16 if dtype == 'BF16' else np.dtype(_DTYPES[dtype])


def _check_extents(path: str, header: dict):
  """Each tensor's bytes are as many as its shape and dtype need, inside the file's data."""
  with open(path, 'rb') as f:
    data_size = os.path.getsize(path) - 8 - int.from_bytes(f.read(8), 'little')
  for name, info in header.items():
    if name == '__metadata__':
      continue
    start, end = info['data_offsets']
    needed = int(np.prod(info['shape'], dtype=np.int64)) * np.dtype(
        _dtype(path, name, info['dtype'])).itemsize
    if end - start != needed or end > data_size:
      raise WeightsFileError(
          f'{path}: {name} declares shape {tuple(info["shape"])} ({needed} bytes) at bytes '
          f'{start}..{end} of a data part of {data_size}; the file is truncated or crafted.')


def _read_safetensors_raw(path: str, header: Optional[dict] = None) -> dict:
  header = _safetensors_header(path) if header is None else header
  with open(path, 'rb') as f:
    f.seek(8 + int.from_bytes(f.read(8), 'little'))
    data = f.read()
  out = {}
  for name, info in header.items():
    if name != '__metadata__':
      start, end = info['data_offsets']
      dtype = _dtype(path, name, info['dtype'])
      array = np.frombuffer(data[start:end], dtype).reshape(info['shape'])
      out[name] = array.astype(np.float32) if info['dtype'] == 'BF16' else array
  return out
