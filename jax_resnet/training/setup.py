"""From a RunSpec (training.spec) to the pieces of a run: model, optimizer, schedule, steps and
the data-parallel runner; the state template that checkpoints restore into; the run's rules
that need the dataset opened."""

import dataclasses
import jax

from jax_resnet.data import spec as data_spec
from jax_resnet.errors import TrainingError
from jax_resnet.registry import create_model
from jax_resnet.training import device_data, loss_scale, optim, parallel, steps
from jax_resnet.training.spec import RunSpec


def check_against_dataset(spec: RunSpec, info):
  """The rules that need the dataset opened (`info`: data.dataset_info): the data's own
  (DataError), then device_data's (TrainingError)."""
  data_spec.check_against_dataset(spec.data, info)
  data, loop = spec.data, spec.loop
  if loop.device_data and data.batch_size > info.num_train:
    raise TrainingError(f'batch_size={data.batch_size} exceeds the {info.num_train} training '
                        'examples that device_data draws from.')
  total = spec.schedule.total_steps(steps_per_epoch(spec, info.num_train))
  if loop.device_data and total % loop.steps_per_dispatch:
    raise TrainingError(f'{total} training steps are not a multiple of steps_per_dispatch='
                        f'{loop.steps_per_dispatch}; pick a divisor.')


def build_model(spec: RunSpec, bn_axis_name=None):
  """The registered model with the run's options; bn_axis_name for cross-replica BN."""
  return create_model(spec.model, bn_axis_name=bn_axis_name, **spec.model_kwargs)


@dataclasses.dataclass
class RunParts:
  model: object
  tx: object
  runner: 'parallel.Runner'
  steps_per_epoch: int
  total_steps: int


def steps_per_epoch(spec: RunSpec, num_train: int) -> int:
  """Full global batches per pass over the training set (at least one)."""
  return max(1, num_train // spec.data.batch_size)


def build_run(spec: RunSpec, num_train: int, devices=None) -> RunParts:
  """`devices` (default: all) lets tests compare device counts in one process."""
  epoch_steps = steps_per_epoch(spec, num_train)
  total = spec.schedule.total_steps(epoch_steps)
  axis = parallel.AXIS
  model = build_model(spec, bn_axis_name=axis if spec.loop.sync_batch_norm else None)
  tx = optim.make_optimizer(**dataclasses.asdict(spec.optimizer))
  schedule = optim.make_schedule(**spec.schedule.schedule_kwargs(epoch_steps, total))
  train_step = steps.make_train_step(model, tx, schedule, axis_name=axis,
                                     **dataclasses.asdict(spec.step))
  eval_step = steps.make_eval_step(model, axis_name=axis)
  runner = parallel.make_runner(spec.loop.parallelism, train_step, eval_step, devices)
  if spec.loop.device_data:
    runner.set_multi_step(device_data.make_multi_step(
        train_step, num_train, spec.data.batch_size, len(devices or jax.devices()),
        spec.data.seed, spec.data.augment, spec.data.crop_padding,
        spec.loop.steps_per_dispatch, axis_name=axis))
  return RunParts(model, tx, runner, epoch_steps, total)


def host_state(spec: RunSpec, model, tx, input_shape):
  """The initial TrainState on the host (numpy): a fresh start, and the template a checkpoint
  restores into. The key is jax.random.key(seed) itself; the steps use fold_in(key, 1)."""
  create = lambda rng: steps.create_train_state(
      model, tx, rng, input_shape, ema=spec.step.ema_decay > 0,
      warming_up=spec.step.warmup_lr > 0,
      loss_scale=loss_scale.for_dtype(spec.model_kwargs.get('dtype', 'float32')))
  return jax.device_get(jax.jit(create)(jax.random.key(spec.loop.seed)))
