"""Sharing a trained model: `save_pretrained` writes a Hub model repository folder,
`push_to_hub` uploads one with huggingface_hub.

    jr.save_pretrained('runs/finetune', 'my-resnet')                   # a trainer workdir
    jr.save_pretrained((variables, 'resnet50'), 'my-resnet')           # a variables tree
    jr.save_pretrained(nnx_model, 'my-resnet', layout='jax_resnet')    # a jax_resnet.nnx model
    jr.push_to_hub('runs/finetune', 'me/my-resnet')

The files and both layouts are `jax_resnet.weights.hub_write`'s; this module gathers what a
source records (a workdir through the config layer) and talks to the Hub. docs/sharing.md.
"""

import json
import os
import shutil
import tempfile
from typing import Mapping, Optional, Sequence

from jax_resnet.errors import UserError
from jax_resnet.weights import hub_write

CLASS_NAMES_FILE, SUMMARY_FILE = 'class_names.json', 'summary.json'
_METRICS = ('final_eval_top1', 'final_eval_loss')


class SharingError(UserError):
  """A source, folder, repository name or Hub answer that save_pretrained or push cannot use."""


def _read_json_file(path: str, what: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError) as error:
    raise SharingError(f'cannot read {what} {path}: {error}') from None


def _licence_id(text: str) -> str:
  """The SPDX-style identifier a licence text starts with ('BSD-3-Clause (torchvision); ...'
  -> 'bsd-3-clause'), as the Hub's `license` field takes it."""
  return text.split()[0].strip('();,').lower()


def _workdir_source(workdir: str):
  """(model name, variables, create_model options, Preprocessing, CardFacts) of a trainer
  workdir: its config through the config layer, its newest verified checkpoint, the class
  names, summary and curves it recorded."""
  from jax_resnet import weights
  from jax_resnet.config import eval_preprocessing, from_json, resolve
  from jax_resnet.weights import tags
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(config_path):
    raise SharingError(f'{workdir} has no config.json: pass a workdir written by '
                       'jax-resnet train.')
  with open(config_path, encoding='utf-8') as f:
    run = resolve(from_json(f.read()))
  try:
    variables = weights.load(run.model, workdir)
  except weights.WeightsError as error:
    raise SharingError(f'{workdir} holds no finished checkpoint to share: {error}') from None
  # The eval transform the run recorded (eval_preprocessing.json, or rebuilt from config.json).
  data = run.data
  record = eval_preprocessing(workdir)
  note = None
  mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
  if record.normalize == 'mean_std':
    mean, std = tuple(record.mean), tuple(record.std)
  elif record.normalize == 'per_pixel_mean':
    note = ("Trained with the training set's per-pixel mean image subtracted; mean/std above "
            'do not express it.')
  preprocessing = hub_write.Preprocessing(record.image_size, record.crop_fraction,
                                          record.interpolation, mean, std, note)
  summary_path = os.path.join(workdir, SUMMARY_FILE)
  summary = _read_json_file(summary_path, 'summary') if os.path.isfile(summary_path) else {}
  names_path = os.path.join(workdir, CLASS_NAMES_FILE)
  class_names = (_read_json_file(names_path, 'class names') if os.path.isfile(names_path)
                 else None)
  init = run.loop.init_from
  tag = tags.TAGS.get(init)
  facts = hub_write.CardFacts(
      class_names=class_names, source_tag=init if tag else None,
      license=_licence_id(tag.licence) if tag else None, dataset=data.dataset,
      metrics={k: float(summary[k]) for k in _METRICS if isinstance(summary.get(k), (int, float))},
      curves=os.path.join(workdir, hub_write.CURVES_FILE))
  options = {k: v for k, v in run.model_kwargs.items() if k != 'num_classes'}
  return run.model, variables, options, preprocessing, facts


def _default_preprocessing(model_name: str) -> hub_write.Preprocessing:
  """For weights of unknown provenance: the model's native input size, ImageNet's statistics,
  and torchvision V1's resize (256 for 224) on ImageNet-sized inputs."""
  from jax_resnet.model_facts import model_info
  size = model_info(model_name).input_size
  return hub_write.Preprocessing(size, 0.875 if size == 224 else 1.0)


def _source(source):
  """(model name, variables, options, Preprocessing, CardFacts) of any source."""
  if isinstance(source, (str, os.PathLike)):
    if not os.path.isdir(source):
      raise SharingError(f'{source} is not a folder: pass a trainer workdir, a (variables, '
                         'model name) pair or a jax_resnet.nnx model.')
    return _workdir_source(os.fspath(source))
  from flax import linen
  from jax_resnet import nnx
  if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], str):
    variables, name = source
    return name, variables, {}, _default_preprocessing(name), hub_write.CardFacts()
  if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], linen.Module):
    variables, module = source  # a created model with options: its registered name found
    name = _registry_name(module)
    return (name, variables, _module_options(module, name), _default_preprocessing(name),
            hub_write.CardFacts())
  if isinstance(source, nnx.BridgedModel):
    module = source.module
    name = _registry_name(module)
    return (name, nnx.to_linen(source), _module_options(module, name),
            _default_preprocessing(name), hub_write.CardFacts())
  raise SharingError(f'cannot save a {type(source).__name__}: pass a trainer workdir, a '
                     '(variables, model name) pair or a jax_resnet.nnx model.')


def _registry_name(module) -> str:
  """The registered name whose defaults `module` is built from: the one it differs from in
  the fewest fields, then with the closest stage sizes (resnet20 for (1, 1, 1))."""
  from jax_resnet.registry import list_models, model_defaults
  best = None
  for name in list_models():
    cls, defaults = model_defaults(name)
    if type(module) is not cls:
      continue
    options = _module_options(module, name)
    stages = defaults.get('stage_sizes', ())
    depth = sum(abs(a - b) for a, b in zip(module.stage_sizes, stages)) + 99 * abs(
        len(module.stage_sizes) - len(stages))
    key = (len(options), depth, name)
    if best is None or key < best:
      best = key
  if best is None:
    raise SharingError(f'{type(module).__name__} is not a registered model.')
  return best[2]


def _module_options(module, name: str) -> dict:
  """The fields of `module` that differ from the registered `name`'s."""
  import dataclasses
  from jax_resnet.registry import model_defaults
  cls, defaults = model_defaults(name)
  fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ('parent',
                                                                                    'name')}
  return {k: getattr(module, k) for k, default in fields.items()
          if k != 'num_classes' and getattr(module, k) != defaults.get(k, default)}


def save_pretrained(source, directory, layout: str = 'timm', *,
                    class_names: Optional[Sequence[str]] = None,
                    repo_id: str = 'OWNER/REPO', metrics: Optional[Mapping] = None) -> str:
  """Writes `directory` (new or empty) as a Hub model repository: model.safetensors,
  config.json, README.md (and curves.png of a workdir).

  source: a trainer workdir, a (variables, registered model name) pair, a (variables,
  create_model(...) module) pair (its options kept; named by the registered model it differs
  least from), or a `jax_resnet.nnx` model. layout: 'timm' (timm's names and config; models
  with a timm counterpart), 'jax_resnet' (ours; every registered model) or None (timm's
  where the model has a timm counterpart, else ours). class_names and
  metrics override what a workdir recorded; repo_id names the repository in the card's examples.
  Raises SharingError or a WeightsError (one line); nothing is left behind then."""
  from dataclasses import replace
  if layout is not None:
    hub_write.check_layout(layout)
  name, variables, options, preprocessing, facts = _source(source)
  layout = layout or default_layout(name, options)
  facts = replace(facts, repo_id=repo_id,
                  class_names=class_names if class_names is not None else facts.class_names,
                  metrics=dict(metrics) if metrics is not None else facts.metrics)
  arrays, config = hub_write.repository_files(name, variables, layout, options, preprocessing,
                                              facts)
  card = hub_write.model_card(name, config, facts)
  curves = facts.curves if facts.curves and os.path.isfile(facts.curves) else None
  return hub_write.write_repository(directory, arrays, config, card, curves)


def default_layout(model_name: str, options: Mapping) -> str:
  """'timm' where the model with these options is timm's, else 'jax_resnet'."""
  from jax_resnet.weights import WeightsError
  try:
    hub_write.timm_architecture(model_name, options)
  except WeightsError:
    return 'jax_resnet'
  return 'timm'


def push_to_hub(source, repo_id: str, layout: Optional[str] = 'timm', private: bool = False,
                token: Optional[str] = None) -> str:
  """Saves `source` (as save_pretrained) in a temporary folder and uploads it to the Hub
  repository `repo_id` ('owner/name'), created if absent. The
  token: `token`, else huggingface_hub's (HF_TOKEN or `hf auth login`); HF_ENDPOINT honoured.
  Returns (the commit's URL, the layout written). Nothing is written outside the temporary
  folder, which is removed."""
  check_repo_id(repo_id)
  token = _token(token)
  staging = tempfile.mkdtemp(prefix='jax_resnet_push.')
  try:
    folder = save_pretrained(source, os.path.join(staging, 'repo'), layout, repo_id=repo_id)
    with open(os.path.join(folder, hub_write.CONFIG_FILE), encoding='utf-8') as f:
      layout = json.load(f)[hub_write.BLOCK]['layout']
    return upload_folder(folder, repo_id, private, token), layout
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def check_repo_id(repo_id: str):
  import re
  if not isinstance(repo_id, str) or not re.fullmatch(
      r'[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}', repo_id) or '..' in repo_id:
    raise SharingError(f'repository {repo_id!r} is not owner/name (letters, digits, - _ .); '
                       'pass e.g. --repo me/my-resnet.')


def _token(token: Optional[str]) -> str:
  import huggingface_hub
  token = token or huggingface_hub.get_token()
  if not token:
    raise SharingError('no Hugging Face token: set HF_TOKEN or run `hf auth login`, then push '
                       'again.')
  return token


def _endpoint() -> str:
  from huggingface_hub import constants
  return os.environ.get('HF_ENDPOINT', constants.ENDPOINT).rstrip('/')


def upload_folder(folder: str, repo_id: str, private: bool, token: str) -> str:
  """Creates `repo_id` (kept if it exists) and commits every file of `folder` in one commit;
  SharingError with the Hub's answer in one line when it refuses."""
  from huggingface_hub import CommitOperationAdd, HfApi
  api = HfApi(endpoint=_endpoint(), token=token)
  files = sorted(os.listdir(folder))
  try:
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.create_commit(
        repo_id, [CommitOperationAdd(name, os.path.join(folder, name)) for name in files],
        commit_message='Upload model saved by jax_resnet')
  except Exception as error:  # huggingface_hub raises HTTP, validation and OS errors
    text = ' '.join(str(error).split())[:300]
    raise SharingError(f'the Hub at {_endpoint()} refused the upload to {repo_id}: '
                       f'{type(error).__name__}: {text}') from None
  return info.commit_url
