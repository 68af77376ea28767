"""What a workdir records about its data, beside config.json: `class_names.json` (a JSON list,
class i's name at i, when the dataset names its classes: a folder's class folders, a TFDS
label feature's names, the digits) for predict and export, and for a `folder:` dataset
`split.json` (the files of each split), which a resume reads back so that it trains and
evaluates on the same files whatever was added to the folder since."""

import dataclasses
import json
import os

import jax

from jax_resnet import data
from jax_resnet.data import folder
from jax_resnet.training import workdir as workdir_lib
from jax_resnet.training.spec import RunSpec

CLASS_NAMES_FILE = 'class_names.json'
SPLIT_FILE = 'split.json'


def with_recorded_split(spec: RunSpec, workdir: str) -> RunSpec:
  """`spec` whose data reads workdir/split.json when it exists (folder datasets only)."""
  if not folder.is_folder(spec.data.dataset):
    return spec
  recorded = dataclasses.replace(spec.data, split_record=os.path.join(workdir, SPLIT_FILE))
  return dataclasses.replace(spec, data=recorded)


def write(spec: RunSpec, workdir: str, say=print):
  """Writes the data's records into `workdir` (process 0) and says what a folder holds and
  what skip_unreadable left out."""
  if jax.process_index() != 0:
    return
  for name, value in data.dataset_records(spec.data).items():
    path = os.path.join(workdir, name)
    with workdir_lib.storage_errors(f'writing {path}'):
      workdir_lib.write_atomic(path, _one_item_a_line(value))
  if not folder.is_folder(spec.data.dataset):
    return
  info = data.dataset_info(spec.data)
  say(f'jax_resnet: {spec.data.dataset}: {info.num_classes} classes, {info.num_train} training '
      f'and {info.num_eval} eval images (files recorded in {SPLIT_FILE}).', flush=True)
  if info.skipped:
    first, reason = info.skipped[0]
    say(f'jax_resnet: skip_unreadable: left out {len(info.skipped)} unreadable image file(s) '
        f'(first: {first}: {reason}).', flush=True)


def _one_item_a_line(value) -> str:
  """JSON with each item of a top-level list on its own line (split.json stays readable and
  diffable: one file a line)."""
  if isinstance(value, list):
    return '[\n' + ',\n'.join(json.dumps(v) for v in value) + '\n]\n'
  items = [f'{json.dumps(k)}: ' + (_one_item_a_line(v).rstrip() if isinstance(v, list) else
                                    json.dumps(v)) for k, v in value.items()]
  return '{\n' + ',\n'.join(items) + '\n}\n'
