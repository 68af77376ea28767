"""The config boundary: the one place library code reads config keys.

`resolve(config)` checks a ConfigDict once (each failure one ConfigError line saying what, why
and what to do) and returns a `training.spec.RunSpec` of plain values. The checks are the
config's own (types, ranges, 'auto' choices) and those it asks of the layers below, as it asks
`create_model` about model options: `data.spec.check` (dataset rules), the optimizer, schedule
and parallelism names (`training.optim`, `training.parallel`) and device_data's augmentations,
each failing with its own layer's error, reworded here. Everything after it (model, optimizer,
schedule, steps, input pipeline, loop) takes values, so each piece is usable without a
ConfigDict. docs/architecture.md lists which key reaches which function.
"""

import dataclasses
import json
import math
import numbers
from typing import Optional

import jax
import ml_collections

from jax_resnet.config.base import base_config
from jax_resnet.data import spec as data_rules
from jax_resnet.data.spec import DataSpec
from jax_resnet.errors import ConfigError, ModelError, UserError, not_one_of
from jax_resnet.model_facts import model_info
from jax_resnet.registry import create_model, model_defaults
from jax_resnet.stems import check_stem_conv, stem_spec
from jax_resnet.training import device_data, optim, parallel
from jax_resnet.training.changes import flat_settings
from jax_resnet.training.spec import (LoopSpec, OptimizerSpec, RunSpec, ScheduleSpec,
                                      StepSpec)

DTYPES = ('float32', 'bfloat16', 'float16', 'float64')
CONV1X1_CHOICES = ('auto', 'conv', 'dot')
# Keys that change the shapes or meaning of a checkpoint: resuming across them is refused.
IDENTITY_KEYS = ('model', 'num_classes', 'dataset', 'image_size', 'optimizer', 'ema_decay')
# The keys (or sections) that shape each part of the saved train state (a checkpoint restores
# only into the same shapes): what a mismatch on resume is blamed on (RunSpec.state_shaping).
_MODEL_KEYS = ('model', 'model_options', 'num_classes', 'dtype', 'conv1x1', 'stem_conv')
STATE_SHAPING_KEYS = {
    'params': _MODEL_KEYS, 'batch_stats': _MODEL_KEYS, 'ema_params': _MODEL_KEYS + ('ema_decay',),
    'opt_state': _MODEL_KEYS + ('optimizer', 'momentum', 'nesterov', 'weight_decay',
                                'weight_decay_mode', 'decay_bn_and_bias', 'trainable'),
    'warming_up': ('warmup_lr',), 'loss_scale': ('dtype',)}
# Keys that moved into config.model_options (a workdir written before keeps working).
MOVED_TO_MODEL_OPTIONS = ('shortcut', 'zero_init_residual', 'drop_path_rate', 'dropout_rate',
                          'scan_blocks', 'freeze_batch_norm')
# 'auto' stem per backend. CPU: the plain convolution, the fastest there (docs/benchmarks.md).
# GPU: the plain convolution until a GPU run has timed the three. TPU: space-to-depth, the stem
# of Google's MLPerf ResNet-50 TPU submissions.
_AUTO_STEM_CONV = {'cpu': 'conv', 'gpu': 'conv', 'tpu': 'space_to_depth'}


def resolve(config: ml_collections.ConfigDict, backend: Optional[str] = None) -> RunSpec:
  """Validates `config` and returns its values; `backend` (default: JAX's) resolves 'auto'."""
  backend = backend or jax.default_backend()
  config = with_model_of_init_from(config)
  config = with_dataset_classes(config)
  validate(config, backend)
  c = config
  lr = c.learning_rate * (c.batch_size / c.lr_batch_base if c.lr_batch_base > 0 else 1.0)
  return RunSpec(
      model=c.model, model_kwargs=model_kwargs(c, backend), data=data_spec(c),
      optimizer=OptimizerSpec(c.optimizer, c.momentum, c.nesterov, c.weight_decay,
                              c.weight_decay_mode, c.decay_bn_and_bias, c.trainable),
      schedule=ScheduleSpec(c.lr_schedule, lr, c.warmup_epochs, tuple(c.lr_boundaries),
                            c.lr_decay_factor, c.num_epochs, c.num_train_steps),
      step=_same_names(StepSpec, c), loop=_same_names(LoopSpec, c),
      identity=identity(c), settings=flat_settings(json.loads(c.to_json())),
      state_shaping=dict(STATE_SHAPING_KEYS), config_json=c.to_json(sort_keys=True))


def _same_names(cls, config):
  """A spec dataclass whose fields are config keys of the same names."""
  return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})


def with_model_of_init_from(config):
  """`config`, or a copy whose empty `model` is the one `init_from` holds (a weight tag's
  model, a Hub repository's, or what the loader works out from a file or workdir): the
  finetune recipe names no model of its own."""
  if config.model or not config.init_from:
    return config
  from jax_resnet.weights import loader
  try:
    if loader.is_tag_like(config.init_from):
      name = loader.model_of_tag(config.init_from)
    else:
      name = loader.read_pretrained(config.init_from).model
  except UserError as error:
    _fail(f'init_from={config.init_from!r}: {error}')
  config = config.copy_and_resolve_references()
  config.model = name
  return config
def with_dataset_classes(config):
  """`config`, or when num_classes is 0 ('the dataset's count', `data.spec.class_count`: a
  folder's class folders) a copy with the count filled in, so the model, the resume identity
  and config.json all hold the number."""
  if config.num_classes != 0 or not (isinstance(config.dataset, str) and config.dataset):
    return config
  try:
    count = data_rules.class_count(_same_names(DataSpec, config))
  except UserError as error:
    _fail(str(error))
  filled = config.copy_and_resolve_references()
  filled.num_classes = count
  return filled


def init_tag(config) -> str:
  """The weight tag whose statistics fine-tuning uses: init_tag, else init_from when that names
  a published tag (weights.list_tags()) rather than a file; '' when none."""
  if config.init_tag:
    return config.init_tag
  from jax_resnet.weights.tags import TAGS
  return config.init_from if config.init_from in TAGS else ''


def data_spec(config) -> DataSpec:
  """The DataSpec of `config`; 'mean_std' takes init_tag's statistics when one is set."""
  data = _same_names(DataSpec, config)
  if init_tag(config):
    from jax_resnet.weights.tags import get_tag
    data = dataclasses.replace(data, **get_tag(init_tag(config)).eval_transform())
  return data


def model_kwargs(config, backend: str) -> dict:
  """create_model's options: the set model_options, plus what the trainer decides."""
  kwargs = {k: v for k, v in config.model_options.items() if v is not None}
  if config.trainable != 'all' and config.model_options.freeze_batch_norm is None:
    # A partly frozen net normalises with its running statistics and updates none (the
    # usual fine-tuning rule); freeze_batch_norm=False updates the trainable parts' only.
    kwargs['freeze_batch_norm'] = True
  kwargs.update(num_classes=config.num_classes, dtype=config.dtype,
                # float64 is for checks at round-off: parameters in it too, not mixed
                param_dtype='float64' if config.dtype == 'float64' else 'float32',
                conv1x1_as_dot=conv1x1_as_dot(config.conv1x1, backend))
  stem = stem_conv(config.stem_conv, config.model, backend)
  if stem != 'conv':  # only image models with the ImageNet stem have the option
    kwargs['stem_conv'] = stem
  return kwargs


def conv1x1_as_dot(choice: str, backend: str) -> bool:
  """'auto' is 'dot' on the CPU backend only (the GPU numbers in docs/benchmarks.md were
  measured with convolutions)."""
  return choice == 'dot' or (choice == 'auto' and backend == 'cpu')


def stem_conv(choice: str, model: str, backend: str) -> str:
  """'auto' resolves per backend for models with a 7x7/2 stem (ImageNet, BiT), to 'conv' for
  the others (CIFAR, deep and video stems have no 7x7/2)."""
  if choice != 'auto':
    return choice
  if not stem_spec(model_info(model).stem).seven_by_seven:
    return 'conv'
  return _AUTO_STEM_CONV.get(backend, 'conv')


def identity(mapping) -> dict:
  return {k: json.loads(json.dumps(mapping[k])) for k in IDENTITY_KEYS if k in mapping}


def from_json(text_or_dict) -> ml_collections.ConfigDict:
  """The config a workdir's config.json holds, on today's schema: keys added since take their
  base values, keys that moved (MOVED_TO_MODEL_OPTIONS) are moved."""
  saved = dict(json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict)
  config = base_config()
  options = saved.pop('model_options', {}) or {}
  for key in MOVED_TO_MODEL_OPTIONS:
    value = saved.pop(key, None)
    # A falsy old value is the model's own default ('' shortcut, 0.0 rates, False switches);
    # the old trainer did not pass those it lacks (video models have no dropout_rate).
    if value and options.get(key) is None:
      options[key] = value
  as_config = lambda value: tuple(value) if isinstance(value, list) else value  # JSON arrays
  for key, value in options.items():
    if value is not None:
      config.model_options[key] = as_config(value)
  for key, value in saved.items():
    if key in config:
      config[key] = as_config(value)
  return config


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(message, choices=()):
  raise ConfigError(f'Invalid config: {message}', choices=choices)


def _choice(config, key, choices):
  if config[key] not in choices:
    _fail(not_one_of(key, config[key], choices), choices)


def _ask(check, value, key=None, own_choices=()):
  """A lower layer's check of `value` as this layer's line: with `key`, a refused choice is
  worded under the key's name (after `own_choices`, values the config resolves itself, such as
  'auto'); any other refusal in the layer's own words."""
  try:
    check(value)
  except UserError as error:
    if key and error.choices:
      _fail(not_one_of(key, value, tuple(own_choices) + error.choices),
            tuple(own_choices) + error.choices)
    _fail(str(error))


def validate(config, backend: Optional[str] = None):
  """Every rule on a config, in the order a reader would check them; `backend` (default:
  JAX's) resolves 'auto' options as resolve will."""
  config = with_dataset_classes(config)
  _check_finite(config)
  _check_model(config, backend or jax.default_backend())
  _check_data(config)
  _check_optimisation(config)
  _check_run(config)


def _check_model(c, backend):
  if not c.model:
    _fail('model is empty: name one (jax_resnet.list_models()), or set init_from to weights '
          'that say which model they hold (a weight tag, a workdir).')
  try:
    model_defaults(c.model)
  except ModelError as error:  # names close matches
    _fail(str(error))
  _choice(c, 'dtype', DTYPES)
  if c.dtype == 'float64' and jax.dtypes.canonicalize_dtype('float64') != 'float64':
    _fail("dtype='float64' needs 64-bit arrays, which JAX turns off by default: set "
          'JAX_ENABLE_X64=1 (train.py does it for you).')
  _choice(c, 'conv1x1', CONV1X1_CHOICES)
  if c.stem_conv != 'auto':  # 'auto': the config's own choice, resolved per backend
    _ask(check_stem_conv, c.stem_conv, 'stem_conv', own_choices=('auto',))
  if not (_is_int(c.num_classes) and c.num_classes > 0):
    _fail(f"num_classes must be a positive integer (or 0: the dataset's count), got "
          f'{c.num_classes!r}.')
  try:  # the module's own checks (options it lacks, shortcut, rates); builds nothing
    create_model(c.model, **model_kwargs(c, backend))
  except (TypeError, ModelError) as error:
    raise ConfigError(f'Invalid config for model {c.model!r}: {error}') from None
  reduction = model_info(c.model).min_input_size
  if _is_int(c.image_size) and c.image_size < reduction:
    _fail(f'image_size={c.image_size} is too small for {c.model}: its stem and stages '
          f'downsample by {reduction}; use image_size >= {reduction}.')


def _check_data(c):
  if not (isinstance(c.dataset, str) and c.dataset):
    _fail(f"dataset={c.dataset!r} must be a dataset name such as 'digits', 'cifar10', "
          "'imagenet2012' or 'synthetic'.")
  for key, low in (('image_size', 8), ('batch_size', 1), ('eval_batch_size', 1),
                   ('holdout_size', 0), ('crop_padding', 0), ('num_workers', 0),
                   ('prefetch_batches', 0), ('seed', None)):
    value = c[key]
    if not (_is_int(value) and (low is None or value >= low)):
      _fail(f'{key}={value!r} must be an integer' + (f' >= {low}' if low is not None else '')
            + (' (the digits are 8x8, CIFAR 32, ImageNet 224)' if key == 'image_size' else '')
            + '.')
  _ask(data_rules.check, _same_names(DataSpec, c))  # every dataset rule, in its own words
  if init_tag(c):
    from jax_resnet.weights.tags import UnknownTagError, get_tag
    key = 'init_tag' if c.init_tag else 'init_from'
    try:
      tag = get_tag(init_tag(c))
    except UnknownTagError as error:
      _fail(f'init_tag: {error}')
    if tag.model != c.model:
      _fail(f'{key}={init_tag(c)!r} is a {tag.model} checkpoint but model={c.model!r}; use '
            f'a tag of {c.model} (jax_resnet.weights.list_tags({c.model!r})).')
  if c.device_data:
    _ask(device_data.check_augment, c.augment)
    if not (_is_int(c.steps_per_dispatch) and c.steps_per_dispatch >= 1):
      _fail(f'steps_per_dispatch must be >= 1, got {c.steps_per_dispatch}.')


def _check_finite(c):
  """inf or nan in a real-valued setting reaches the weights within a step."""
  sections = [('', c), ('model_options.', c.model_options)]
  for prefix, section in sections:
    for key, value in section.items():
      values = value if isinstance(value, tuple) else (value,)
      if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        _fail(f'{prefix}{key}={value} is not finite; every real-valued setting must be a '
              'finite number.')


def _check_optimisation(c):
  checks = [
      (c.learning_rate >= 0, f'learning_rate must be >= 0, got {c.learning_rate}; a negative '
       'rate ascends the loss.'),
      (c.weight_decay >= 0, f'weight_decay must be >= 0, got {c.weight_decay}.'),
      (0 <= c.label_smoothing < 1, f'label_smoothing must be in [0, 1), got {c.label_smoothing}.'),
      (0 <= c.ema_decay < 1, f'ema_decay must be in [0, 1), got {c.ema_decay}.'),
      (c.num_train_steps >= 0 or c.num_epochs > 0,
       'set num_epochs > 0 or num_train_steps >= 0 to say how long to train.'),
  ]
  for ok, message in checks:
    if not ok:
      _fail(message)
  _ask(optim.check_optimizer, c.optimizer, key='optimizer')
  _ask(optim.check_schedule, c.lr_schedule, key='lr_schedule')
  _ask(optim.check_weight_decay_mode, c.weight_decay_mode, key='weight_decay_mode')
  from jax_resnet import finetune
  _ask(finetune.prefixes, c.trainable)


def _check_run(c):
  for key in ('log_every_steps', 'checkpoint_every_steps'):
    if c[key] <= 0:
      _fail(f'{key} must be positive, got {c[key]}.')
  if not (_is_int(c.keep_checkpoints) and c.keep_checkpoints >= 1):
    _fail(f'keep_checkpoints must be an integer >= 1, got {c.keep_checkpoints!r}: with none '
          'kept every checkpoint would be deleted.')
  _ask(parallel.check_parallelism, c.parallelism, key='parallelism')
  # Per process: the input pipeline checks its own process_count (data.pipeline).
  devices = jax.device_count()
  for key in ('batch_size', 'eval_batch_size'):
    if c[key] % devices:
      _fail(f'{key}={c[key]} is not divisible by the {devices} devices '
            f'({jax.devices()[0].platform}); each device needs an equal share: use a multiple '
            f'of {devices}.')
