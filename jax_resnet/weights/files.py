"""Weights files: .safetensors (timm / Hugging Face hub), .pth/.pt/.bin (torch), .npz (ours) and
Orbax checkpoints written by the trainer."""

import os
import re
from typing import Mapping, Optional

import jax
import numpy as np

from jax_resnet.weights.torch_layout import variable_shapes
from jax_resnet.weights.npz import npz_headers, read_npz
from jax_resnet.weights.safetensors_file import (_read_safetensors_raw,  # noqa: F401
                                                 read_safetensors, safetensors_header_shapes)
from jax_resnet.weights.trees import (HeadMismatchError, WeightsFileError,
                                      WeightsMismatchError, compare, first_line, flatten,
                                      head_classes, head_classes_of, mismatch_message, unflatten)

TORCH_SUFFIXES = ('.pth', '.pt', '.bin')
SUFFIX_KINDS = {'.safetensors': 'safetensors', **{suffix: 'torch' for suffix in TORCH_SUFFIXES},
                '.npz': 'npz'}
# The first torch release without the published bypasses of torch.load(weights_only=True).
TORCH_FLOOR = (2, 10)
FORMATS = ('.safetensors, .pth/.pt/.bin (torch state dict), .npz (jax_resnet.weights.save_npz '
           'or a BiT release checkpoint) or an Orbax checkpoint directory (a train.py workdir)')


def load(model_name: str, path, num_classes: Optional[int] = None,
         reinit_head: bool = False, *, layout: Optional[str] = None) -> dict:
  """Reads weights for `model_name` from `path` as {'params', 'batch_stats'} (numpy arrays).

  Formats: `.safetensors` and `.pth`/`.pt`/`.bin` hold torchvision-layout state dicts
  (torchvision downloads, timm files such as resnet50.tv_in1k or resnet50.a1_in1k); torch
  files are read with `torch.load(weights_only=True)`, so a pickle that would run code is
  refused; timm's ResNet-D, ResNetV2 and BiT files go through timm's names (`from_timm`).
  `.npz` files are `save_npz` exports or BiT release checkpoints (`resnet/root_block/...`
  names, `weights.big_vision`), directories are Orbax checkpoints of train.py
  (a workdir, its checkpoints/ folder or one checkpoints/<step>); those two work for every
  registered model. A workdir of the Flax ImageNet example's train.py (or one of its
  checkpoint_<step>) loads resnet18 ... resnet200 for `create_model(model_name,
  padding='same')` (`weights.flax_imagenet`).

  num_classes: None, or the checkpoint's own class count, keeps its head. Another value raises
  HeadMismatchError unless `reinit_head=True`, which returns the variables without 'head'
  (initialise a new one, e.g. with `merge_pretrained`); 0 (a backbone) always drops it.

  layout: which converter reads a state dict file, 'torchvision' or 'timm' (a weight tag's
  `source` picks it); None: torchvision's for the models it has, else timm's.

  Raises WeightsFileError (absent, unreadable, unsafe or unknown file) or WeightsMismatchError
  (tensors that do not fit the model, all listed in one message).
  """
  path = os.fspath(path)
  kind = file_kind(path)
  variables = (_read_state_dict_weights(model_name, path, layout) if kind in STATE_DICT_READERS
               else READERS[kind](model_name, path))
  check_values(variables, path)
  return select_head(variables, num_classes, reinit_head, path)


def file_kind(path: str) -> str:
  """What `path` is, which picks its reader in READERS: 'flax_imagenet' (a workdir of the Flax
  ImageNet example or one checkpoint_<step>), 'workdir' (any other directory: the trainer's
  Orbax checkpoints), else by suffix (SUFFIX_KINDS): 'safetensors', 'torch', 'npz' (ours) or
  'bit_npz' (a BiT release checkpoint, told by its members' names). WeightsFileError for a
  missing path or an unknown suffix."""
  from jax_resnet.weights import big_vision, flax_imagenet
  if not os.path.exists(path):
    raise WeightsFileError(f'weights file {path} not found.')
  if flax_imagenet.find_checkpoint(path) is not None:
    return 'flax_imagenet'
  if os.path.isdir(path):
    return 'workdir'
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIX_KINDS:
    raise WeightsFileError(f'{path}: unknown weights file extension {suffix or "(none)"!r}; '
                           f'expected {FORMATS}.')
  kind = SUFFIX_KINDS[suffix]
  if kind == 'npz' and big_vision.looks_like_big_vision(npz_headers(path)):
    return 'bit_npz'
  return kind


def read_state_dict(path: str) -> dict:
  """The torch-layout state dict (name -> array) of a .safetensors or torch file, by its
  suffix; WeightsFileError for any other."""
  kind = SUFFIX_KINDS.get(os.path.splitext(path)[1].lower())
  if kind not in STATE_DICT_READERS:
    raise WeightsFileError(f'{path} is no state dict file; expected .safetensors or '
                           f'{"/".join(TORCH_SUFFIXES)}.')
  return STATE_DICT_READERS[kind](path)


def state_dict_shapes(path: str) -> dict:
  """name -> something with `.shape` for a .safetensors or torch file, read without reading
  its tensors: a safetensors file's JSON header (`safetensors_header_shapes`), a torch file's
  tensors memory-mapped (`read_torch`: torch.load(mmap=True) unpickles data.pkl only; a file
  of the legacy, non-zip format is read whole)."""
  kind = SUFFIX_KINDS.get(os.path.splitext(path)[1].lower())
  return safetensors_header_shapes(path) if kind == 'safetensors' else read_state_dict(path)


def _read_state_dict_weights(model_name: str, path: str, layout: Optional[str] = None) -> dict:
  """Names and shapes checked from the header (safetensors) or the memory-mapped tensors
  (torch) before a tensor is read, then read and converted."""
  declared = state_dict_shapes(path)
  check_state_dict(model_name, declared, source=path, layout=layout)
  arrays = declared if SUFFIX_KINDS[os.path.splitext(path)[1].lower()] == 'torch' \
      else read_state_dict(path)
  return from_state_dict(model_name, arrays, source=path, layout=layout)


def _read_native_npz(model_name: str, path: str) -> dict:
  """An .npz of ours (save_npz), names and shapes checked from the members' headers before
  any array is read."""
  _check_native(model_name, npz_headers(path), path)  # arrays have the shapes headers declare
  return unflatten(read_npz(path))


def _read_bit_npz(model_name: str, path: str) -> dict:
  """A BiT release checkpoint, names and shapes checked from the members' headers before any
  array is read."""
  from jax_resnet.weights import big_vision
  from jax_resnet.weights.recognise import guess_model
  headers = npz_headers(path)
  if model_name not in big_vision.big_vision_models():
    guess = guess_model(headers)
    raise WeightsMismatchError(
        f'{path} is a BiT checkpoint' + (f' of {guess}' if guess else '') + f', not weights '
        f'for {model_name}; BiT files load into {", ".join(big_vision.big_vision_models())}.')
  big_vision.check_big_vision(model_name, headers, source=path)
  return big_vision.from_big_vision(model_name, read_npz(path), source=path)


def _read_flax_imagenet(model_name: str, path: str) -> dict:
  """A `flax.training.checkpoints` directory: the Flax ImageNet example's TrainState (its
  names, for padding='same'), or a tree of ours saved with the same API (a notebook's
  {'params', 'batch_stats'} or TrainState), checked as our own names."""
  from jax_resnet.weights import flax_imagenet
  tree = flax_imagenet.read_checkpoint(path)
  flat = flatten(tree)
  if flax_imagenet.is_example_tree(flat):
    flax_imagenet.check_supported(model_name)
    return flax_imagenet.from_flax_imagenet(model_name, tree, source=str(path))
  return _check_native(model_name, flat, path)


def _read_workdir(model_name: str, path: str) -> dict:
  return _check_native(model_name, read_orbax(path), path)


def from_state_dict(model_name: str, arrays: Mapping, source: str = 'state dict', *,
                    layout: Optional[str] = None) -> dict:
  """A torch-layout state dict -> our variables, by the converter `layout` names
  ('torchvision' | 'timm') or, when None, the one that fits the model: torchvision's names
  (torchvision and timm ResNet / ResNeXt / Wide ResNet files) or timm's (ResNet-D, ResNetV2,
  BiT). A mismatch names the model the file looks like."""
  return _by_converter(model_name, arrays, source, 'from', layout)


def check_state_dict(model_name: str, arrays: Mapping, source: str = 'state dict', *,
                     layout: Optional[str] = None):
  """`from_state_dict`'s names and shapes check alone, on arrays or shapes (a file's header):
  WeightsMismatchError, naming the model the file looks like, before any tensor is read."""
  _by_converter(model_name, arrays, source, 'check', layout)


def _by_converter(model_name: str, arrays: Mapping, source: str, what: str, layout=None):
  from jax_resnet.weights import timm as timm_layouts, torchvision
  from jax_resnet.weights.recognise import guess_model
  converters = {'torchvision': (torchvision.torchvision_models(), torchvision),
                'timm': (tuple(timm_layouts.timm_names()), timm_layouts)}
  try:
    if layout is None:
      layout = next((kind for kind, (models, _) in converters.items() if model_name in models),
                    None)
    if layout in converters and model_name in converters[layout][0]:
      module = converters[layout][1]
      return getattr(module, f'{what}_{layout}')(model_name, arrays, source=source)
    layouts = f'no {layout}' if layout in converters else 'no torchvision or timm'
    known = sorted(set(converters['torchvision'][0]) | set(converters['timm'][0]))
    raise WeightsMismatchError(
        f'{model_name} has {layouts} layout; {source} cannot be converted. Models '
        f'with one: {", ".join(known)}.')
  except WeightsMismatchError as error:
    if error.holds is not None:  # the converter already named the model the file holds
      raise
    guess = guess_model(arrays)
    if guess is None or guess == model_name:
      raise
    raise WeightsMismatchError(f'{error} The file holds {guess} weights.', holds=guess) from None


def check_values(variables: dict, source: str):
  """Weights are finite floating-point numbers: integer (quantised), boolean or complex arrays
  would load and compute nonsense, and a non-finite value poisons every output."""
  for name, array in flatten(variables).items():
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == 'bfloat16'):
      raise WeightsFileError(f'{source}: {name} holds {array.dtype} values; weights must be '
                             'floating point (is the file quantised, or not a weights file?).')
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
      raise WeightsFileError(f'{source}: {name} has {bad} non-finite values; the file is '
                             'corrupt or was saved from a diverged run.')


def select_head(variables: dict, num_classes: Optional[int], reinit_head: bool, source: str):
  """Applies load()'s num_classes / reinit_head rule."""
  params, have = variables['params'], head_classes_of(variables)
  if num_classes is None or num_classes == have:
    return variables
  if num_classes == 0 or reinit_head:
    return {**variables, 'params': {k: v for k, v in params.items() if k != 'head'}}
  found = f'a {have}-class head' if have else 'no classifier head'
  raise HeadMismatchError(
      f'{source} has {found} but num_classes={num_classes} was requested; pass '
      'reinit_head=True to drop the pretrained head and train a new one.')


def _check_native(model_name: str, flat: dict, source: str) -> dict:
  num_classes = head_classes(flat)
  expected = flatten(variable_shapes(model_name, num_classes))
  missing, unexpected, wrong = compare(expected, flat)
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f'{source} does not match {model_name} ({len(expected)} arrays)', missing, unexpected,
        wrong, 'Check the model name: the checkpoint was written for another model.'))
  return unflatten(flat)


def read_torch(path: str) -> dict:
  """A torch state dict via torch.load(weights_only=True): tensors and plain containers only.
  The zip format (torch.save's since torch 1.6) is memory-mapped (mmap=True): data.pkl is
  unpickled, the tensors' bytes are read when a tensor is, so names and shapes are checked
  before; a legacy (non-zip) file is read whole."""
  try:
    import torch
  except ImportError:
    raise WeightsFileError(f'{path} is a torch file and reading it needs torch '
                           '(pip install torch); or use a .safetensors file.') from None
  version = tuple(int(part) for part in re.findall(r'\d+', torch.__version__)[:2])
  if version < TORCH_FLOOR:
    raise WeightsFileError(
        f'reading {path} needs torch >= {".".join(map(str, TORCH_FLOOR))} (found '
        f'{torch.__version__}): older releases have published ways around '
        'torch.load(weights_only=True). Upgrade torch, or use a .safetensors file.')
  import pickle
  import warnings
  try:
    with warnings.catch_warnings():  # torch's notes on legacy pickle protocols: noise here
      warnings.simplefilter('ignore', UserWarning)
      import zipfile
      obj = torch.load(path, map_location='cpu', weights_only=True,
                       mmap=zipfile.is_zipfile(path))
  except pickle.UnpicklingError as error:
    found = re.search(r'WeightsUnpickler error:\s*(.+?)(?:\. Please|\n|$)', str(error))
    detail = found[1].strip() if found else first_line(error)
    raise WeightsFileError(
        f'refused to load {path}: torch.load(weights_only=True) found content other than '
        f'tensors and plain containers ({detail}); unpickling it could run arbitrary code, so '
        'it was not loaded. If the file is corrupt, download it again; if you trust it, '
        're-save its state dict as .safetensors.') from None
  except Exception as error:  # torch reports corrupt archives as RuntimeError
    raise WeightsFileError(f'cannot read {path} as a torch checkpoint ({first_line(error)}); '
                           'the file is corrupt or not a torch file.') from None
  state_dict = _state_dict_of(obj, path)
  _check_storage(state_dict, path)
  return state_dict


def _check_storage(state_dict: Mapping, path: str):
  """Each tensor owns as many bytes as it has elements: a stride-0 view of a tiny storage would
  otherwise stand for an array of any size (a 30 KB file loading as gigabytes)."""
  for name, tensor in state_dict.items():
    if not hasattr(tensor, 'untyped_storage'):
      continue
    needed = tensor.numel() * tensor.element_size()
    held = tensor.untyped_storage().nbytes()
    if held < needed:
      raise WeightsFileError(
          f'{path}: {name} declares shape {tuple(tensor.shape)} ({needed} bytes) over a storage '
          f'of {held} bytes (a stride-0 or overlapping view); a weights file stores every value, '
          'so it was refused.')


def _state_dict_of(obj, path: str) -> dict:
  """The state dict itself, or the one inside a training checkpoint {'state_dict': ...}."""
  if isinstance(obj, Mapping):
    for key in ('state_dict', 'model'):
      if isinstance(obj.get(key), Mapping):
        return dict(obj[key])
    return dict(obj)
  raise WeightsFileError(f'{path} holds a {type(obj).__name__}, not a state dict (a dict of '
                         'tensors).')


def read_orbax(path: str) -> dict:
  """params and batch_stats of a saved TrainState, as flat numpy arrays, without a template.
  A train.py workdir (or its checkpoints/, or one step) is read through the trainer's verified
  reader (`training.checkpoints.read_verified`: the newest step whose checksums hold); any other
  Orbax PyTree directory is read as it is. A run that kept an exponential moving average gives
  its EMA weights, the ones it evaluated; a scan_blocks run's stacked blocks are unrolled."""
  from jax_resnet.checkpoint_reader import CheckpointError, read_verified
  path = os.path.abspath(path)  # Orbax takes absolute paths only
  try:
    verified = read_verified(path)
  except CheckpointError as error:
    raise WeightsFileError(str(error)) from None
  if verified is not None:
    state, source = verified[1], f'{path} (step {verified[0]})'
  elif os.path.exists(os.path.join(path, '_METADATA')):
    state, source = _read_pytree(path), path
  else:
    raise WeightsFileError(f'{path} is a directory without an Orbax checkpoint; expected a '
                           'train.py workdir (with checkpoints/<step>/state) or one '
                           'checkpoints/<step> folder.')
  if not isinstance(state, Mapping) or 'params' not in state:
    raise WeightsFileError(f'{source} is not a train.py TrainState (no params).')
  if state.get('ema_params'):
    state = {**state, 'params': state['ema_params']}
  variables = {'params': state['params'], 'batch_stats': state.get('batch_stats') or {}}
  from jax_resnet.scan import unstack_blocks  # a scan_blocks run: stageN_scan/block stacked
  return flatten(unstack_blocks(variables))


def _read_pytree(state_dir: str):
  """An Orbax PyTree checkpoint that is not a trainer's step (no checksums to verify)."""
  import orbax.checkpoint as ocp
  try:
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(state_dir)
    tree = getattr(metadata, 'item_metadata', metadata)
    tree = getattr(tree, 'tree', tree)
    # numpy restore types: the saved shardings may name devices this machine does not have.
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  except Exception as error:  # orbax/tensorstore raise many types
    raise WeightsFileError(f'cannot read the Orbax checkpoint {state_dir} '
                           f'({first_line(error)}).') from None


STATE_DICT_READERS = {'safetensors': read_safetensors, 'torch': read_torch}
# Each file kind's reader: (model name, path) -> variables, names and shapes checked.
READERS = {'safetensors': _read_state_dict_weights, 'torch': _read_state_dict_weights,
           'npz': _read_native_npz, 'bit_npz': _read_bit_npz,
           'flax_imagenet': _read_flax_imagenet, 'workdir': _read_workdir}
