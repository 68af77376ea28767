"""From a config to the pieces of a run: validated config, model, schedule, steps, runner."""

import dataclasses
import json
import os

import jax

import jax_resnet
from jax_resnet.errors import ConfigError
from jax_resnet.stems import STEM_CONVS
from jax_resnet.training import device_data, optim, parallel, steps


def validate_config(config):
  """Values that cannot work, each as one clear error."""
  try:
    jax_resnet.model_defaults(config.model)
  except ValueError as error:  # names close matches
    raise ConfigError(f'Invalid config: {error}') from None
  checks = [
      (config.batch_size > 0, f'batch_size must be positive, got {config.batch_size}.'),
      (config.eval_batch_size > 0,
       f'eval_batch_size must be positive, got {config.eval_batch_size}.'),
      (config.learning_rate >= 0,
       f'learning_rate must be >= 0, got {config.learning_rate}; a negative rate ascends the '
       'loss.'),
      (config.weight_decay >= 0, f'weight_decay must be >= 0, got {config.weight_decay}.'),
      (0 <= config.label_smoothing < 1,
       f'label_smoothing must be in [0, 1), got {config.label_smoothing}.'),
      (0 <= config.ema_decay < 1, f'ema_decay must be in [0, 1), got {config.ema_decay}.'),
      (config.num_classes > 0, f'num_classes must be positive, got {config.num_classes}.'),
      (config.num_train_steps >= 0 or config.num_epochs > 0,
       'set num_epochs > 0 or num_train_steps >= 0 to say how long to train.'),
      (config.log_every_steps > 0,
       f'log_every_steps must be positive, got {config.log_every_steps}.'),
      (config.checkpoint_every_steps > 0,
       f'checkpoint_every_steps must be positive, got {config.checkpoint_every_steps}.'),
      (config.dtype in ('float32', 'bfloat16', 'float16', 'float64'),
       f"dtype must be 'float32', 'bfloat16', 'float16' or 'float64', got {config.dtype!r}."),
      (config.dtype != 'float64' or jax.dtypes.canonicalize_dtype('float64') == 'float64',
       "dtype='float64' needs 64-bit arrays, which JAX turns off by default: set "
       'JAX_ENABLE_X64=1 (train.py does it for you).'),
      (config.conv1x1 in CONV1X1_CHOICES,
       f"conv1x1 must be 'auto', 'conv' or 'dot', got {config.conv1x1!r}."),
      (config.stem_conv in STEM_CONV_CHOICES,
       f"stem_conv must be 'auto', 'conv', 'pad_channels' or 'space_to_depth', "
       f"got {config.stem_conv!r}."),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(f'Invalid config: {message}')
  if config.parallelism not in parallel.PARALLELISMS:
    raise ConfigError(f'Invalid config: parallelism must be one of '
                      f'{", ".join(parallel.PARALLELISMS)}, got {config.parallelism!r}.')
  _check_image_size(config)
  parallel.check_divisible(config.batch_size)
  parallel.check_divisible(config.eval_batch_size, 'eval_batch_size')


def _check_image_size(config):
  """The stem and stages downsample by a fixed factor; smaller inputs leave no pixels."""
  cls, defaults = jax_resnet.model_defaults(config.model)
  stages = len(defaults.get('stage_sizes', (2, 2, 2, 2)))
  stem = 1 if defaults.get('stem') == 'cifar' else 4
  factor = stem * 2 ** (stages - 1)
  if config.image_size < factor:
    raise ConfigError(
        f'Invalid config: image_size={config.image_size} is too small for {config.model}: its '
        f'stem and stages downsample by {factor}; use image_size >= {factor}.')


CONV1X1_CHOICES = ('auto', 'conv', 'dot')


def conv1x1_as_dot(choice: str) -> bool:
  """config.conv1x1 -> the model option; 'auto' is 'dot' on the CPU backend only (the GPU
  numbers in docs/benchmarks.md were measured with convolutions)."""
  return choice == 'dot' or (choice == 'auto' and jax.default_backend() == 'cpu')


STEM_CONV_CHOICES = ('auto',) + STEM_CONVS
# 'auto' per backend. CPU: the plain convolution, the fastest of the three there
# (docs/benchmarks.md). GPU: the plain convolution until scripts/gpu_check.sh's `tune` section
# has timed the three (no GPU run has yet). TPU: space-to-depth, the stem of Google's MLPerf
# ResNet-50 TPU submissions.
_AUTO_STEM_CONV = {'cpu': 'conv', 'gpu': 'conv', 'tpu': 'space_to_depth'}


def stem_conv(choice: str, model: str) -> str:
  """config.stem_conv -> the model option: 'auto' resolves per backend for models with the
  ImageNet stem, and to 'conv' for the others (CIFAR and video stems have no 7x7/2)."""
  if choice != 'auto':
    return choice
  cls, defaults = jax_resnet.model_defaults(model)
  if cls is not jax_resnet.ResNet or defaults.get('stem', 'imagenet') != 'imagenet':
    return 'conv'
  return _AUTO_STEM_CONV.get(jax.default_backend(), 'conv')


def build_model(config, bn_axis_name=None):
  overrides = dict(num_classes=config.num_classes, dtype=config.dtype,
                   # float64 is for checks at round-off: parameters in it too, not mixed
                   param_dtype='float64' if config.dtype == 'float64' else 'float32',
                   zero_init_residual=config.zero_init_residual,
                   drop_path_rate=config.drop_path_rate, bn_axis_name=bn_axis_name,
                   freeze_batch_norm=config.freeze_batch_norm,
                   conv1x1_as_dot=conv1x1_as_dot(config.conv1x1))
  if config.shortcut:
    overrides['shortcut'] = config.shortcut
  if config.dropout_rate:
    overrides['dropout_rate'] = config.dropout_rate
  if config.scan_blocks:
    overrides['scan_blocks'] = True
  stem = stem_conv(config.stem_conv, config.model)
  if stem != 'conv':  # video models have no such field
    overrides['stem_conv'] = stem
  try:
    return jax_resnet.create_model(config.model, **overrides)
  except (TypeError, ValueError) as error:
    raise ConfigError(f'Invalid config for model {config.model!r}: {error}') from None


@dataclasses.dataclass
class RunParts:
  model: object
  tx: object
  schedule: object
  runner: object
  steps_per_epoch: int
  total_steps: int


def build_run(config, num_train: int, devices=None) -> RunParts:
  steps_per_epoch = max(1, num_train // config.batch_size)
  total = (config.num_train_steps if config.num_train_steps >= 0
           else int(round(config.num_epochs * steps_per_epoch)))
  axis = parallel.AXIS
  model = build_model(config, bn_axis_name=axis if config.sync_batch_norm else None)
  tx = optim.make_optimizer(config)
  schedule = optim.make_schedule(config, steps_per_epoch, total)
  train_step = steps.make_train_step(config, model, tx, schedule, axis_name=axis)
  eval_step = steps.make_eval_step(config, model, axis_name=axis)
  runner = parallel.make_runner(config.parallelism, train_step, eval_step, devices)
  if config.device_data:
    device_data.check(config, num_train)
    if total % config.steps_per_dispatch:
      raise ConfigError(f'Invalid config: {total} training steps are not a multiple of '
                        f'steps_per_dispatch={config.steps_per_dispatch}; pick a divisor.')
    runner.set_multi_step(device_data.make_multi_step(
        config, train_step, axis, len(devices or jax.devices()), num_train))
  return RunParts(model, tx, schedule, runner, steps_per_epoch, total)


# Keys that change the shapes or meaning of a checkpoint: resuming across them is refused.
IDENTITY_KEYS = ('model', 'num_classes', 'dataset', 'image_size', 'optimizer', 'ema_decay')


def check_workdir_config(config, workdir: str):
  """Refuses to resume a workdir that another model or dataset wrote."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  changed = [f'{k}: {previous.get(k)!r} -> {config[k]!r}' for k in IDENTITY_KEYS
             if k in previous and previous[k] != _jsonable(config[k])]
  if changed:
    raise ConfigError(
        f'Workdir {workdir} holds a run with a different setup ({"; ".join(changed)}); '
        'resuming it would mix two runs. Use a new --workdir, or delete that one.')


def _jsonable(value):
  return json.loads(json.dumps(value))


def write_config(config, workdir: str):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2, sort_keys=True))
