"""Pretrained weights in one call: `load_pretrained(tag)` fetches the tag's file (cached,
verified; `weights.download`), reads it with the converter of its source and returns the model
and its variables.

    model, variables = jax_resnet.load_pretrained('resnet50d.ra2_in1k')
    model, variables = jax_resnet.load_pretrained('resnet50', num_classes=10)  # fresh head
    model, variables = jax_resnet.load_pretrained('hf-hub:microsoft/resnet-50')

A tag is one of `weights.list_tags()`, a registered model name (its `default_tag`), or
'hf-hub:<owner>/<repo>' naming a Hugging Face repository that holds a timm ResNet (its
config.json names the `architecture`) or a transformers `ResNetForImageClassification`
(config.json with model_type 'resnet').
"""

import json
import logging
from typing import Optional

import jax
import numpy as np

from jax_resnet.model_facts import model_info
from jax_resnet.registry import create_model, list_models
from jax_resnet.weights import download, files, hub_config, tags
from jax_resnet.weights.trees import WeightsError, head_classes_of, merge_pretrained

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
  if tag.startswith(HUB_PREFIX):
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


def pretrained_variables(tag):
  """(registry name, variables as float32 numpy, WeightTag or None) of `tag`."""
  weight_tag = resolve_tag(tag)
  if weight_tag is None:
    name, variables = _hub_repository(tag[len(HUB_PREFIX):])
    return name, variables, None
  return weight_tag.model, files.load(weight_tag.model, fetch(weight_tag)), weight_tag


def _read_json(path: str, what: str) -> dict:
  try:
    with open(path, encoding='utf-8') as f:
      config = json.load(f)
  except (OSError, ValueError) as error:
    raise WeightsError(f'cannot read {what}: {error}') from None
  if not isinstance(config, dict):
    raise WeightsError(f'{what} is not a JSON object.')
  return config


def _hub_model(repo_id: str):
  """(its config.json, 'timm' | 'transformers', registry name) of a Hub repository."""
  from jax_resnet.weights import timm, transformers
  config = _read_json(download.fetch_hub(repo_id, CONFIG_FILE), f'{CONFIG_FILE} of {repo_id}')
  source = f'{HUB_PREFIX}{repo_id}'
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
  state_dict = files.read_state_dict(download.fetch_hub(repo_id, WEIGHTS_FILE))
  if kind == 'timm':
    variables = files.from_state_dict(name, state_dict, source=source)
  else:
    variables = transformers.from_transformers(name, state_dict, source=source)
  files.check_values(variables, source)
  return name, variables


def hub_tag(tag: str) -> Optional[tags.WeightTag]:
  """The WeightTag of 'hf-hub:<repo>' with the preprocessing the repository records: a
  transformers repository's preprocessor_config.json (when it has one), a timm repository's
  config.json pretrained_cfg; None when it records none."""
  repo_id = tag[len(HUB_PREFIX):]
  config, kind, name = _hub_model(repo_id)
  if kind == 'transformers':
    path = download.fetch_hub(repo_id, PREPROCESSOR_FILE, optional=True)
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


def load_pretrained(tag, *, rng=None, **options):
  """(model, variables) of the published weights `tag`: a `create_model` module and its
  {'params', 'batch_stats'} (jax arrays, the dtypes of param_dtype).

  options are create_model's. A `num_classes` other than the file's gives a freshly
  initialised head (from `rng`, default key 0; one log line says so), 0 a backbone.

  Raises ValueError for an unknown tag, WeightsError (one line) when the file cannot be
  fetched, verified or converted.
  """
  name, variables, weight_tag = pretrained_variables(tag)
  label = weight_tag.name if weight_tag else tag
  have = head_classes_of(variables)
  num_classes = options.pop('num_classes', have)
  model = create_model(name, num_classes=num_classes, **options)
  info = model_info(name)
  x = np.zeros((1,) + ((info.min_num_frames,) if info.input_kind == 'video' else ())
               + (info.min_input_size,) * 2 + (3,), np.float32)
  if num_classes and num_classes != have:
    _log.warning('%s: a fresh %d-class head replaces the pretrained %d-class one.', label,
                 num_classes, have)
    key = jax.random.key(0) if rng is None else rng
    fresh = jax.jit(lambda k: model.init(k, x, train=False))(key)
  else:
    fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  merged = merge_pretrained(fresh, variables, reinit_head=num_classes != have)
  return model, merged
