"""From a RunSpec (jax_resnet.config.resolve) to the pieces of a run: model, optimizer,
schedule, steps and the data-parallel runner; the state template that checkpoints restore
into."""

import dataclasses
import jax

import jax_resnet
from jax_resnet.config.boundary import RunSpec
from jax_resnet.training import device_data, optim, parallel, steps


def build_model(spec: RunSpec, bn_axis_name=None):
  """The registered model with the run's options; bn_axis_name for cross-replica BN."""
  return jax_resnet.create_model(spec.model, bn_axis_name=bn_axis_name, **spec.model_kwargs)


@dataclasses.dataclass
class RunParts:
  model: object
  tx: object
  runner: 'parallel.Runner'
  steps_per_epoch: int
  total_steps: int


def build_run(spec: RunSpec, num_train: int, devices=None) -> RunParts:
  """`devices` (default: all) lets tests compare device counts in one process."""
  steps_per_epoch = max(1, num_train // spec.data.batch_size)
  total = spec.schedule.total_steps(steps_per_epoch)
  axis = parallel.AXIS
  model = build_model(spec, bn_axis_name=axis if spec.loop.sync_batch_norm else None)
  tx = optim.make_optimizer(**dataclasses.asdict(spec.optimizer))
  schedule = optim.make_schedule(**spec.schedule.schedule_kwargs(steps_per_epoch, total))
  train_step = steps.make_train_step(model, tx, schedule, axis_name=axis,
                                     **dataclasses.asdict(spec.step))
  eval_step = steps.make_eval_step(model, axis_name=axis)
  runner = parallel.make_runner(spec.loop.parallelism, train_step, eval_step, devices)
  if spec.loop.device_data:
    runner.set_multi_step(device_data.make_multi_step(
        train_step, num_train, spec.data.batch_size, len(devices or jax.devices()),
        spec.data.seed, spec.data.augment, spec.data.crop_padding,
        spec.loop.steps_per_dispatch, axis_name=axis))
  return RunParts(model, tx, runner, steps_per_epoch, total)


def host_state(spec: RunSpec, model, tx, input_shape):
  """The initial TrainState on the host (numpy): a fresh start, and the template a checkpoint
  restores into. The key is jax.random.key(seed) itself; the steps use fold_in(key, 1)."""
  create = lambda rng: steps.create_train_state(
      model, tx, rng, input_shape, ema=spec.step.ema_decay > 0,
      warming_up=spec.step.warmup_lr > 0)
  return jax.device_get(jax.jit(create)(jax.random.key(spec.loop.seed)))
