"""Pretrained weights in one call: `load_pretrained(tag)` fetches the tag's file (cached,
verified; `weights.download`), reads it with the converter of its source and returns the model
and its variables.

    model, variables = jax_resnet.load_pretrained('resnet50d.ra2_in1k')
    model, variables = jax_resnet.load_pretrained('resnet50', num_classes=10)  # fresh head
    model, variables = jax_resnet.load_pretrained('hf-hub:microsoft/resnet-50')
    model, variables = jax_resnet.load_pretrained('runs/cifar10', num_classes=5)  # a workdir

A tag is one of `weights.list_tags()`, a registered model name (its `default_tag`), or
'hf-hub:<owner>/<repo>' naming a Hugging Face repository that holds a timm ResNet (its
config.json names the `architecture`) or a transformers `ResNetForImageClassification`
(config.json with model_type 'resnet').
"""

import json
import logging
import os
from typing import Optional

import jax
import numpy as np

from jax_resnet.model_facts import model_info
from jax_resnet.registry import create_model, list_models
from jax_resnet.weights import download, files, hub_config, tags
from jax_resnet.weights.trees import WeightsError, head_classes_of, merge_pretrained, unflatten

HUB_PREFIX = 'hf-hub:'
WEIGHTS_FILE, CONFIG_FILE = 'model.safetensors', 'config.json'
PREPROCESSOR_FILE = 'preprocessor_config.json'  # transformers' image processor settings
_log = logging.getLogger('jax_resnet')


def resolve_tag(tag) -> Optional[tags.WeightTag]:
  """The WeightTag `tag` names (a registered model name: its default tag; a WeightTag of one's
  own, e.g. a file on a private server, as it is); None for an 'hf-hub:' repository;
  ValueError for an unknown name."""
  if isinstance(tag, tags.WeightTag):
    return tag
  if is_hub_source(tag):
    return None
  if tag not in tags.TAGS and tag in list_models():
    return tags.default_tag(tag)
  return tags.get_tag(tag)


def fetch(tag: tags.WeightTag) -> str:
  """The local path of the tag's weights file (downloaded now unless cached)."""
  if tag.fetch.startswith(HUB_PREFIX):
    return download.fetch_hub(tag.fetch[len(HUB_PREFIX):], WEIGHTS_FILE)
  size = None  # torchvision's published sizes are rounded to kB: checked by digest instead
  return download.fetch_url(tag.fetch, size)


def layout_of(tag: tags.WeightTag) -> Optional[str]:
  """The converter a tag's source picks for its state dict file: torchvision's or timm's
  names (a BiT .npz is told by its members)."""
  return tag.source if tag.source in ('torchvision', 'timm') else None


def pretrained_variables(tag):
  """(registry name, variables as float32 numpy, WeightTag or None) of `tag`."""
  weight_tag = resolve_tag(tag)
  if weight_tag is None:
    name, variables = _hub_repository(_hub_id(tag))
    return name, variables, None
  variables = files.load(weight_tag.model, fetch(weight_tag), layout=layout_of(weight_tag))
  return weight_tag.model, variables, weight_tag


def _read_json(path: str, what: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      config = json.load(f)
  except (OSError, ValueError) as error:
    raise WeightsError(f'cannot read {what}: {error}') from None
  if not isinstance(config, dict):
    raise WeightsError(f'{what} is not a JSON object.')
  return config


def hub_folder(path) -> bool:
  """Whether `path` is a local folder holding a Hub repository's files (save_pretrained's, a
  downloaded snapshot): config.json and model.safetensors."""
  return (isinstance(path, (str, os.PathLike)) and os.path.isdir(path)
          and all(os.path.isfile(os.path.join(path, f)) for f in (CONFIG_FILE, WEIGHTS_FILE)))


def is_hub_source(tag) -> bool:
  """Whether `tag` names a Hub repository: 'hf-hub:<owner>/<repo>', or a local folder of one
  (a registered name or weight tag wins over a folder of the same name)."""
  if not isinstance(tag, (str, os.PathLike)):
    return False
  tag = os.fspath(tag)
  return tag.startswith(HUB_PREFIX) or (tag not in tags.TAGS and tag not in list_models()
                                        and hub_folder(tag))


def _hub_id(tag: str) -> str:
  """The repository id of 'hf-hub:<owner>/<repo>', or a Hub folder's path as it is."""
  return tag[len(HUB_PREFIX):] if tag.startswith(HUB_PREFIX) else os.fspath(tag)


def _hub_file(repo_id: str, filename: str, optional: bool = False):
  """A file of Hub repository `repo_id`, or of the local folder `repo_id` names."""
  if hub_folder(repo_id):
    path = os.path.join(repo_id, filename)
    return path if os.path.isfile(path) or not optional else None
  return download.fetch_hub(repo_id, filename, optional=optional)


def hub_model_options(tag) -> dict:
  """The create_model options a repository written by `save_pretrained` records (config.json's
  'jax_resnet' block); {} for any other tag or repository."""
  if not is_hub_source(tag):
    return {}
  repo_id = _hub_id(tag)
  config = _read_json(_hub_file(repo_id, CONFIG_FILE), f'{CONFIG_FILE} of {repo_id}')
  block = config.get('jax_resnet')
  options = dict(block.get('model_options') or {}) if isinstance(block, dict) else {}
  return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _hub_model(repo_id: str):
  """(its config.json, 'timm' | 'transformers' | 'jax_resnet', registry name) of a Hub
  repository (or a local folder of one)."""
  from jax_resnet.weights import timm, transformers
  config = _read_json(_hub_file(repo_id, CONFIG_FILE), f'{CONFIG_FILE} of {repo_id}')
  source = f'{HUB_PREFIX}{repo_id}'
  block = config.get('jax_resnet')
  if isinstance(block, dict) and block.get('layout') == 'jax_resnet':  # save_pretrained's
    name = str(block.get('model'))
    if name not in list_models():
      raise WeightsError(f'{source} holds {name}, which this jax_resnet version does not '
                         'register; upgrade jax_resnet.')
    return config, 'jax_resnet', name
  if 'architecture' in config:  # timm's hub config
    return config, 'timm', timm.resolve(str(config['architecture']))
  if config.get('model_type') == 'resnet':
    return config, 'transformers', transformers.model_for_config(
        config, source=f'{source} {CONFIG_FILE}')
  raise WeightsError(f'{source} holds neither a timm model (config.json "architecture") nor '
                     'a transformers ResNet (model_type "resnet").')


def _hub_repository(repo_id: str):
  """(registry name, variables) of a Hub repository holding a timm or transformers ResNet."""
  from jax_resnet.weights import transformers
  _, kind, name = _hub_model(repo_id)
  source = f'{HUB_PREFIX}{repo_id}'
  path = _hub_file(repo_id, WEIGHTS_FILE)
  # names and shapes from the header, before a tensor is read
  if kind == 'timm':
    files.check_state_dict(name, files.state_dict_shapes(path), source=source)
  elif kind == 'transformers':
    transformers.check_transformers(name, files.state_dict_shapes(path), source=source)
  state_dict = files.read_state_dict(path)
  if kind == 'jax_resnet':  # our flat names, checked against the model by merge_pretrained
    variables = unflatten({k: np.asarray(v, np.float32) for k, v in state_dict.items()})
  elif kind == 'timm':
    variables = files.from_state_dict(name, state_dict, source=source)
  else:
    variables = transformers.from_transformers(name, state_dict, source=source)
  files.check_values(variables, source)
  return name, variables


def hub_tag(tag: str) -> Optional[tags.WeightTag]:
  """The WeightTag of 'hf-hub:<repo>' with the preprocessing the repository records: a
  transformers repository's preprocessor_config.json (when it has one), a timm repository's
  config.json pretrained_cfg; None when it records none."""
  repo_id = _hub_id(tag)
  config, kind, name = _hub_model(repo_id)
  if kind == 'transformers':
    path = _hub_file(repo_id, PREPROCESSOR_FILE, optional=True)
    if path is None:
      return None
    what = f'{PREPROCESSOR_FILE} of {repo_id}'
    transform = hub_config.processor_transform(_read_json(path, what), what)
  elif isinstance(config.get('pretrained_cfg'), dict) and config['pretrained_cfg'].get(
      'input_size'):
    transform = hub_config.timm_transform(config['pretrained_cfg'],
                                         f'{CONFIG_FILE} of {repo_id}')
  else:
    return None
  return tags.WeightTag(tag, name, kind, tag, str(config.get('license', 'see the repository')),
                        None, num_classes=hub_config.num_classes(
                            config, f'{CONFIG_FILE} of {repo_id}'), **transform)


def load_pretrained(source, model: Optional[str] = None, *, num_classes: Optional[int] = None,
                    rng=None, **options):
  """(module, variables) of `source`: a `create_model` module and its {'params',
  'batch_stats'} (jax arrays, the dtypes of param_dtype).

  source: a weight tag (`weights.list_tags()`) or a registered name (its default tag),
  'hf-hub:<owner>/<repo>', a weights file (.safetensors, .pth/.pt/.bin, .npz), a trainer
  workdir (or one of its checkpoints), the Flax ImageNet example's workdir, or a
  `flax.training.checkpoints` / Orbax directory holding our own variables
  (`weights.loader.read_pretrained`). `model` names the registry model when the source does
  not say it (a state dict or tree that several models fit); one line asks for it otherwise.

  options are create_model's (over those the source needs, e.g. the example's
  padding='same'). A `num_classes` other than the source's gives a freshly initialised head
  (from `rng`, default key 0; one log line says so), 0 a backbone.

  Raises WeightsError subclasses, one line each: an unknown source, a model the source does
  not name, a file that cannot be fetched, verified or converted.
  """
  from jax_resnet.weights.loader import read_pretrained
  found = read_pretrained(source, model)
  variables = found.variables
  have = head_classes_of(variables)
  num_classes = have if num_classes is None else num_classes
  module = create_model(found.model, num_classes=num_classes, **{**found.options, **options})
  info = model_info(found.model)
  x = np.zeros((1,) + ((info.min_num_frames,) if info.input_kind == 'video' else ())
               + (info.min_input_size,) * 2 + (3,), np.float32)
  if num_classes and num_classes != have:
    _log.warning('%s: a fresh %d-class head replaces the pretrained %d-class one.',
                 found.source, num_classes, have)
    key = jax.random.key(0) if rng is None else rng
    fresh = jax.jit(lambda k: module.init(k, x, train=False))(key)
  else:
    fresh = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
  merged = merge_pretrained(fresh, variables, reinit_head=num_classes != have)
  return module, merged
