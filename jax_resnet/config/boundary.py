"""The config boundary: the one place library code reads config keys.

`resolve(config)` checks a ConfigDict once (every rule below, each failure one ConfigError line
saying what, why and what to do) and returns a `RunSpec` of plain values. Everything after it —
model, optimizer, schedule, steps, input pipeline, loop — takes values, so each piece is usable
without a ConfigDict. docs/architecture.md lists which key reaches which function.
"""

import dataclasses
import json
import math
import numbers
from typing import Any, Mapping, Optional

import jax
import ml_collections

import jax_resnet
from jax_resnet.config.base import base_config
from jax_resnet.data.spec import AUGMENTS, NORMALIZATIONS, DataSpec
from jax_resnet.errors import ConfigError
from jax_resnet.stems import SEVEN_BY_SEVEN_STEMS, STEM_CONVS
from jax_resnet.training.optim import OPTIMIZERS, SCHEDULES, WEIGHT_DECAY_MODES
from jax_resnet.training.parallel import PARALLELISMS

DTYPES = ('float32', 'bfloat16', 'float16', 'float64')
CONV1X1_CHOICES = ('auto', 'conv', 'dot')
STEM_CONV_CHOICES = ('auto',) + STEM_CONVS
DIGITS_SPLITS = ('train', 'test')
# Keys that change the shapes or meaning of a checkpoint: resuming across them is refused.
IDENTITY_KEYS = ('model', 'num_classes', 'dataset', 'image_size', 'optimizer', 'ema_decay')
# Keys that moved into config.model_options (a workdir written before keeps working).
MOVED_TO_MODEL_OPTIONS = ('shortcut', 'zero_init_residual', 'drop_path_rate', 'dropout_rate',
                          'scan_blocks', 'freeze_batch_norm')
# 'auto' stem per backend. CPU: the plain convolution, the fastest there (docs/benchmarks.md).
# GPU: the plain convolution until a GPU run has timed the three. TPU: space-to-depth, the stem
# of Google's MLPerf ResNet-50 TPU submissions.
_AUTO_STEM_CONV = {'cpu': 'conv', 'gpu': 'conv', 'tpu': 'space_to_depth'}


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """Keyword arguments of jax_resnet.training.optim.make_optimizer."""
  name: str
  momentum: float
  nesterov: bool
  weight_decay: float
  weight_decay_mode: str
  decay_bn_and_bias: bool


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """The learning-rate schedule before the dataset size is known (epochs -> steps later)."""
  kind: str
  peak_learning_rate: float
  warmup_epochs: float
  boundaries: tuple           # fractions of training (< 1) or step numbers
  decay_factor: float
  num_epochs: float
  num_train_steps: int        # >= 0 overrides num_epochs

  def total_steps(self, steps_per_epoch: int) -> int:
    if self.num_train_steps >= 0:
      return self.num_train_steps
    return int(round(self.num_epochs * steps_per_epoch))

  def schedule_kwargs(self, steps_per_epoch: int, total_steps: int) -> dict:
    """Keyword arguments of jax_resnet.training.optim.make_schedule."""
    return dict(kind=self.kind, peak_learning_rate=self.peak_learning_rate,
                total_steps=total_steps,
                warmup_steps=int(round(self.warmup_epochs * steps_per_epoch)),
                boundaries=tuple(int(b * total_steps) if b < 1 else int(b)
                                 for b in self.boundaries),
                decay_factor=self.decay_factor)


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Keyword arguments of jax_resnet.training.steps.make_train_step."""
  label_smoothing: float
  ema_decay: float
  warmup_lr: float
  warmup_until_error: float
  skip_nonfinite_updates: bool


@dataclasses.dataclass(frozen=True)
class LoopSpec:
  """What the training loop (jax_resnet.training.loop) does between steps."""
  seed: int
  parallelism: str
  sync_batch_norm: bool
  device_data: bool
  steps_per_dispatch: int
  log_every_steps: int
  eval_every_steps: int       # 0: once per epoch
  eval_max_batches: int       # 0: the whole eval split
  checkpoint_every_steps: int
  keep_checkpoints: int
  progress_bar: bool
  init_from: str
  init_reinit_head: bool


@dataclasses.dataclass(frozen=True)
class RunSpec:
  model: str                  # registry name
  model_kwargs: Mapping[str, Any]  # create_model options (bn_axis_name added by the runner)
  data: DataSpec
  optimizer: OptimizerSpec
  schedule: ScheduleSpec
  step: StepSpec
  loop: LoopSpec
  identity: Mapping[str, Any]  # IDENTITY_KEYS' values, compared on resume
  config_json: str            # the whole config, for workdir/config.json and checkpoints


def resolve(config: ml_collections.ConfigDict, backend: Optional[str] = None) -> RunSpec:
  """Validates `config` and returns its values; `backend` (default: JAX's) resolves 'auto'."""
  backend = backend or jax.default_backend()
  validate(config, backend)
  c = config
  lr = c.learning_rate * (c.batch_size / c.lr_batch_base if c.lr_batch_base > 0 else 1.0)
  return RunSpec(
      model=c.model, model_kwargs=model_kwargs(c, backend), data=data_spec(c),
      optimizer=OptimizerSpec(c.optimizer, c.momentum, c.nesterov, c.weight_decay,
                              c.weight_decay_mode, c.decay_bn_and_bias),
      schedule=ScheduleSpec(c.lr_schedule, lr, c.warmup_epochs, tuple(c.lr_boundaries),
                            c.lr_decay_factor, c.num_epochs, c.num_train_steps),
      step=_same_names(StepSpec, c), loop=_same_names(LoopSpec, c),
      identity=identity(c), config_json=c.to_json(sort_keys=True))


def _same_names(cls, config):
  """A spec dataclass whose fields are config keys of the same names."""
  return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})


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
    tag = get_tag(init_tag(config))
    data = dataclasses.replace(data, mean=tuple(tag.mean), std=tuple(tag.std))
  return data


def model_kwargs(config, backend: str) -> dict:
  """create_model's options: the set model_options, plus what the trainer decides."""
  kwargs = {k: v for k, v in config.model_options.items() if v is not None}
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
  if jax_resnet.model_info(model).stem not in SEVEN_BY_SEVEN_STEMS:
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


def _fail(message):
  raise ConfigError(f'Invalid config: {message}')


def _choice(config, key, choices):
  if config[key] not in choices:
    _fail(f'{key} must be one of {", ".join(map(repr, choices))}, got {config[key]!r}.')


def validate(config, backend: Optional[str] = None):
  """Every rule on a config, in the order a reader would check them; `backend` (default:
  JAX's) resolves 'auto' options as resolve will."""
  _check_finite(config)
  _check_model(config, backend or jax.default_backend())
  _check_data(config)
  _check_optimisation(config)
  _check_run(config)


def _check_model(c, backend):
  try:
    jax_resnet.model_defaults(c.model)
  except ValueError as error:  # names close matches
    _fail(str(error))
  _choice(c, 'dtype', DTYPES)
  if c.dtype == 'float64' and jax.dtypes.canonicalize_dtype('float64') != 'float64':
    _fail("dtype='float64' needs 64-bit arrays, which JAX turns off by default: set "
          'JAX_ENABLE_X64=1 (train.py does it for you).')
  _choice(c, 'conv1x1', CONV1X1_CHOICES)
  _choice(c, 'stem_conv', STEM_CONV_CHOICES)
  if not (_is_int(c.num_classes) and c.num_classes > 0):
    _fail(f'num_classes must be a positive integer, got {c.num_classes!r}.')
  try:  # the module's own checks (options it lacks, shortcut, rates); builds nothing
    jax_resnet.create_model(c.model, **model_kwargs(c, backend))
  except (TypeError, ValueError) as error:
    raise ConfigError(f'Invalid config for model {c.model!r}: {error}') from None
  reduction = jax_resnet.model_info(c.model).min_input_size
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
  _choice(c, 'augment', AUGMENTS)
  if init_tag(c):
    from jax_resnet.weights.tags import get_tag
    key = 'init_tag' if c.init_tag else 'init_from'
    try:
      tag = get_tag(init_tag(c))
    except ValueError as error:
      _fail(f'init_tag: {error}')
    if tag.model != c.model:
      _fail(f'{key}={init_tag(c)!r} is a {tag.model} checkpoint but model={c.model!r}; use '
            f'a tag of {c.model} (jax_resnet.weights.list_tags({c.model!r})).')
  _choice(c, 'normalize', NORMALIZATIONS)
  if c.dataset.startswith('imagenet2012') and c.normalize == 'per_pixel_mean':
    _fail("normalize='per_pixel_mean' is not supported for imagenet2012: a mean image over "
          '1.28M JPEGs is too slow to compute; use --config.normalize=mean_std.')
  if c.augment == 'pad_crop_flip' and c.crop_padding >= c.image_size:
    _fail(f'crop_padding={c.crop_padding} must be smaller than image_size={c.image_size} '
          '(the CIFAR recipe pads 4 pixels).')
  if c.dataset == 'digits':
    for split in [c.train_split] + ([c.eval_split] if c.holdout_size == 0 else []):
      if split not in DIGITS_SPLITS:
        _fail(f"split {split!r} does not exist in the embedded 'digits' dataset: use "
              "train_split='train' and eval_split='test'.")
  if c.device_data:
    if c.augment not in ('none', 'pad_crop_flip'):
      _fail(f"device_data supports augment 'none' or 'pad_crop_flip', not {c.augment!r}; use "
            'the host pipeline (device_data=False) for ImageNet-style augmentation.')
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
  _choice(c, 'optimizer', OPTIMIZERS)
  _choice(c, 'lr_schedule', SCHEDULES)
  _choice(c, 'weight_decay_mode', WEIGHT_DECAY_MODES)


def _check_run(c):
  for key in ('log_every_steps', 'checkpoint_every_steps'):
    if c[key] <= 0:
      _fail(f'{key} must be positive, got {c[key]}.')
  if not (_is_int(c.keep_checkpoints) and c.keep_checkpoints >= 1):
    _fail(f'keep_checkpoints must be an integer >= 1, got {c.keep_checkpoints!r}: with none '
          'kept every checkpoint would be deleted.')
  _choice(c, 'parallelism', PARALLELISMS)
  # Per process: the input pipeline checks its own process_count (data.pipeline).
  devices = jax.device_count()
  for key in ('batch_size', 'eval_batch_size'):
    if c[key] % devices:
      _fail(f'{key}={c[key]} is not divisible by the {devices} devices '
            f'({jax.devices()[0].platform}); each device needs an equal share: use a multiple '
            f'of {devices}.')


def check_against_dataset(spec: RunSpec, num_train: int, dataset_classes: int,
                          num_eval: Optional[int] = None):
  """The rules that need the dataset opened: called once its size and classes are known."""
  data = spec.data
  if num_eval == 0:
    where = (f'holdout_size={data.holdout_size}' if data.holdout_size > 0 else
             f'eval_split {data.eval_split!r} of {data.dataset!r}')
    _fail(f'{where} holds no examples, so nothing can be evaluated; choose a split (or a '
          'TFDS slice) that has some.')
  if data.dataset != 'synthetic' and dataset_classes != data.num_classes:
    _fail(f"num_classes={data.num_classes} but dataset {data.dataset!r} has "
          f'{dataset_classes} classes; set --config.num_classes={dataset_classes}.')
  if spec.loop.device_data and data.batch_size > num_train:
    _fail(f'batch_size={data.batch_size} exceeds the {num_train} training examples that '
          'device_data draws from.')
  steps_per_epoch = max(1, num_train // data.batch_size)
  total = spec.schedule.total_steps(steps_per_epoch)
  if spec.loop.device_data and total % spec.loop.steps_per_dispatch:
    _fail(f'{total} training steps are not a multiple of steps_per_dispatch='
          f'{spec.loop.steps_per_dispatch}; pick a divisor.')
