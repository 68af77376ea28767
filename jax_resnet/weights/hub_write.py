"""Writing a Hub model repository (a folder) from a model name and its variables: the weights as
`model.safetensors`, `config.json`, and a model card `README.md`.

layout='timm': timm's parameter names (`weights.timm.to_timm`) and timm's config.json
(`architecture`, `num_classes`, `num_features`, `label_names`, `pretrained_cfg` with the eval
preprocessing), so `timm.create_model('hf-hub:o/r', pretrained=True)` builds and loads it.
layout='jax_resnet': our own flat names ('params/stage1_block1/conv1/kernel') and our model
name and options in config.json, for every registered model (CIFAR nets, plain twins, video
nets). Both carry a 'jax_resnet' block in config.json (model, options, layout) that
`load_pretrained('hf-hub:o/r')` and `load_pretrained(folder)` read.

The folder is built beside its destination and renamed into place, so a failure leaves none.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Mapping, Optional, Sequence

import numpy as np

from jax_resnet.model_facts import feature_info, model_info
from jax_resnet.registry import model_defaults
from jax_resnet.weights.trees import WeightsError, flatten, head_classes_of

LAYOUTS = ('timm', 'jax_resnet')
WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, CURVES_FILE = ('model.safetensors', 'config.json',
                                                    'README.md', 'curves.png')
BLOCK = 'jax_resnet'  # the config.json key of our own record
# create_model options that leave the function and the parameters as the registered model's
# (numerics, training-only behaviour, memory): a timm layout holds them as timm's model.
_FUNCTION_PRESERVING = frozenset({
    'dtype', 'param_dtype', 'drop_path_rate', 'dropout_rate', 'bn_axis_name', 'bn_momentum',
    'zero_init_residual', 'freeze_batch_norm', 'stem_conv', 'conv1x1_as_dot', 'remat'})
_TIMM_MODEL_ARGS = frozenset({'output_stride'})  # timm's ResNet and ResNetV2 take it too


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The eval transform a model expects, in timm's pretrained_cfg terms: `input_size` square
  crop, resize to input_size / crop_pct first, `interpolation`, normalise by mean/std after
  scaling to [0, 1]."""
  input_size: int
  crop_pct: float = 1.0
  interpolation: str = 'bilinear'
  mean: Sequence[float] = (0.485, 0.456, 0.406)
  std: Sequence[float] = (0.229, 0.224, 0.225)
  note: Optional[str] = None  # what the fields cannot express (a per-pixel mean image)


@dataclasses.dataclass(frozen=True)
class CardFacts:
  """What the model card says beyond the weights: the classes, where the weights came from
  (a weight tag and its licence), the data, the run's final metrics, its curves plot."""
  class_names: Optional[Sequence[str]] = None
  source_tag: Optional[str] = None
  license: Optional[str] = None
  dataset: Optional[str] = None
  metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
  curves: Optional[str] = None  # a curves.png to copy beside the card
  repo_id: str = 'OWNER/REPO'


def check_layout(layout: str):
  if layout not in LAYOUTS:
    raise WeightsError(f'layout must be one of {", ".join(map(repr, LAYOUTS))}, got '
                       f'{layout!r}.')


def timm_architecture(model_name: str, options: Mapping) -> str:
  """timm's name for `model_name` built with `options`; WeightsError (one line) when timm has
  no counterpart or an option changes the model away from timm's."""
  from jax_resnet.weights import timm
  if model_name not in timm.TIMM_NAMES:
    raise WeightsError(f"{model_name} has no timm counterpart; save it with "
                       "layout='jax_resnet' (timm layouts exist for "
                       f"{', '.join(timm.TIMM_NAMES)}).")
  changed = sorted(set(options) - _FUNCTION_PRESERVING - _TIMM_MODEL_ARGS)
  defaults = model_defaults(model_name)[1]
  changed = [k for k in changed if options[k] != defaults.get(k, object())]
  if changed:
    raise WeightsError(f'{model_name} with {", ".join(changed)} is not timm\'s '
                       f'{timm.TIMM_NAMES[model_name]}; save it with layout=\'jax_resnet\'.')
  return timm.TIMM_NAMES[model_name]


def _json_options(options: Mapping) -> dict:
  """create_model options as JSON values (tuples as lists), without those of the run rather
  than the model (dtypes, bn_axis_name, remat, the head size recorded on its own)."""
  out = {}
  for key, value in sorted(options.items()):
    if key in ('bn_axis_name', 'dtype', 'param_dtype', 'remat', 'num_classes'):
      continue
    if hasattr(value, 'dtype') or (isinstance(value, type) and hasattr(value, 'dtype')):
      value = np.dtype(value).name
    elif isinstance(value, tuple):
      value = list(value)
    out[key] = value
  return out


def _pretrained_cfg(preprocessing: Preprocessing, num_classes: int, facts: CardFacts,
                    classifier: str) -> dict:
  size = preprocessing.input_size
  cfg = {'tag': facts.source_tag or '', 'custom_load': False, 'input_size': [3, size, size],
         'fixed_input_size': False, 'interpolation': preprocessing.interpolation,
         'crop_pct': preprocessing.crop_pct, 'crop_mode': 'center',
         'mean': [float(v) for v in preprocessing.mean],
         'std': [float(v) for v in preprocessing.std], 'num_classes': num_classes,
         'classifier': classifier}
  if facts.license:
    cfg['license'] = facts.license
  return cfg


def repository_files(model_name: str, variables: Mapping, layout: str,
                     options: Mapping, preprocessing: Preprocessing, facts: CardFacts):
  """(state dict name -> numpy array, config.json as a dict) of the repository."""
  check_layout(layout)
  from jax_resnet.weights import timm
  num_classes = head_classes_of(variables)
  record = {'model': model_name, 'model_options': _json_options(options), 'layout': layout,
            'num_classes': num_classes}
  if preprocessing.note:
    record['preprocessing_note'] = preprocessing.note
  levels = feature_info(model_name) if model_info(model_name).input_kind == 'image' else ()
  config = {'num_classes': num_classes,
            'num_features': levels[-1].channels if levels else None}
  if facts.class_names:
    if len(facts.class_names) != num_classes:
      raise WeightsError(f'{len(facts.class_names)} class names for a {num_classes}-class head.')
    config['label_names'] = list(facts.class_names)
  if layout == 'timm':
    architecture = timm_architecture(model_name, options)
    arrays = timm.to_timm(model_name, variables)
    classifier = 'head.fc' if model_defaults(model_name)[1].get('preact') else 'fc'
    model_args = {k: options[k] for k in _TIMM_MODEL_ARGS if k in options
                  and options[k] != model_defaults(model_name)[1].get(k, 32)}
    config = {'architecture': architecture, **config, 'global_pool': 'avg',
              'pretrained_cfg': _pretrained_cfg(preprocessing, num_classes, facts, classifier),
              **({'model_args': model_args} if model_args else {})}
  else:
    _check_fits(model_name, options, variables)
    arrays = {name: np.asarray(value) for name, value in flatten(variables).items()}
    config = {**config, 'pretrained_cfg': _pretrained_cfg(preprocessing, num_classes, facts,
                                                          'params/head')}
  config[BLOCK] = record
  return arrays, config


def _check_fits(model_name: str, options: Mapping, variables: Mapping):
  """WeightsMismatchError (one message) unless `variables` are those of
  create_model(model_name, **options) with their head."""
  import jax
  import jax.numpy as jnp
  from jax_resnet.registry import create_model
  from jax_resnet.weights.trees import WeightsMismatchError, compare, mismatch_message
  model = create_model(model_name, **{**options, 'num_classes': head_classes_of(variables)})
  info = model_info(model_name)
  shape = ((1,) + ((info.min_num_frames,) if info.input_kind == 'video' else ())
           + (info.min_input_size,) * 2 + (3,))
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                               train=False))
  missing, unexpected, wrong = compare(flatten(expected), flatten(variables))
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f'variables do not match {model_name}', missing, unexpected, wrong,
        'Pass the variables of the model named here with the options it was built with.'))


def _yaml_list(key: str, values) -> list:
  return [f'{key}:'] + [f'- {json.dumps(str(v))}' for v in values]


def model_card(model_name: str, config: Mapping, facts: CardFacts) -> str:
  """README.md: YAML metadata (library, licence, datasets, metrics, tags), what the model is,
  its preprocessing and results, and the ways to load it."""
  layout = config[BLOCK]['layout']
  repo = facts.repo_id
  lines = ['---', f'library_name: {"timm" if layout == "timm" else "jax_resnet"}']
  if facts.license:
    lines.append(f'license: {json.dumps(facts.license)}')
  lines += _yaml_list('tags', ['image-classification', 'jax', 'flax', 'jax_resnet']
                      + (['timm'] if layout == 'timm' else []))
  if facts.dataset:
    lines += _yaml_list('datasets', [facts.dataset])
  if facts.metrics:
    lines += _yaml_list('metrics', ['accuracy' if 'top1' in k else 'loss'
                                    for k in sorted(facts.metrics)])
  lines += ['---', '', f'# {repo.split("/")[-1]}', '',
            f'`{model_name}` ({config[BLOCK]["num_classes"]} classes) from '
            f'[jax_resnet](https://pypi.org/project/jax-resnet-family/), saved in the '
            f'{layout} layout.']
  if facts.source_tag:
    lines += ['', f'Fine-tuned from the published weights `{facts.source_tag}`'
              + (f' (licence: {facts.license}).' if facts.license else '.')]
  cfg = config['pretrained_cfg']
  lines += ['', '## Preprocessing', '',
            f'{cfg["input_size"][-1]}x{cfg["input_size"][-1]} RGB, resize to input / crop_pct '
            f'= {cfg["crop_pct"]} ({cfg["interpolation"]}), centre crop, scale to [0, 1], '
            f'normalise by mean {cfg["mean"]} and std {cfg["std"]}.']
  if config[BLOCK].get('preprocessing_note'):
    lines.append(config[BLOCK]['preprocessing_note'])
  if facts.metrics or facts.dataset:
    lines += ['', '## Results', '', f'Dataset: {facts.dataset or "not recorded"}.', '',
              '| metric | value |', '| --- | --- |']
    lines += [f'| {k} | {v:.4f} |' for k, v in sorted(facts.metrics.items())]
  if facts.curves:
    lines += ['', '![training curves](curves.png)']
  lines += ['', '## Use', '', '```python', 'import jax_resnet as jr',
            f"model, variables = jr.load_pretrained('hf-hub:{repo}')",
            'logits = model.apply(variables, images, train=False)   # NHWC float32', '```']
  if layout == 'timm':
    lines += ['', '```python', 'import timm',
              f"model = timm.create_model('hf-hub:{repo}', pretrained=True).eval()", '```']
  return '\n'.join(lines) + '\n'


def write_repository(directory: str, arrays: Mapping, config: Mapping, card: str,
                     curves: Optional[str] = None) -> str:
  """Writes the folder `directory` (absent or empty) with model.safetensors, config.json,
  README.md and curves.png, built in a temporary folder beside it and renamed into place."""
  from safetensors.numpy import save_file
  directory = os.path.abspath(os.fspath(directory))
  if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
    raise WeightsError(f'{directory} exists and is not an empty folder; pass a new folder.')
  parent = os.path.dirname(directory)
  if not os.path.isdir(parent):
    raise WeightsError(f'{parent} does not exist; create it or pass another folder.')
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(directory)}.', dir=parent)
  try:
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()},
              os.path.join(staging, WEIGHTS_FILE), metadata={'format': 'pt'})
    with open(os.path.join(staging, CONFIG_FILE), 'w', encoding='utf-8') as f:
      json.dump(config, f, indent=2)
      f.write('\n')
    with open(os.path.join(staging, CARD_FILE), 'w', encoding='utf-8') as f:
      f.write(card)
    if curves and os.path.isfile(curves):
      shutil.copyfile(curves, os.path.join(staging, CURVES_FILE))
    if os.path.isdir(directory):
      os.rmdir(directory)  # empty, checked above
    os.replace(staging, directory)
  finally:
    if os.path.isdir(staging):
      shutil.rmtree(staging)
  return directory
