"""What a run is, as plain values: the spec dataclasses the trainer takes. The config boundary
(jax_resnet.config.resolve) builds a `RunSpec` from a ConfigDict; a notebook may build one
directly. Nothing here reads a config key.
"""

import dataclasses
from typing import Any, Mapping

from jax_resnet.data.spec import DataSpec


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """Keyword arguments of jax_resnet.training.optim.make_optimizer."""
  name: str
  momentum: float
  nesterov: bool
  weight_decay: float
  weight_decay_mode: str
  decay_bn_and_bias: bool
  trainable: str = 'all'      # jax_resnet.finetune: 'all' | 'head' | 'prefix,prefix'


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
  trainable: str = 'all'      # the frozen modules' BatchNorm statistics stay


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
  allow_batch_size_change: bool = False  # resume a checkpoint of another global batch


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything a run needs (jax_resnet.training.loop.train takes it)."""
  model: str                  # registry name
  model_kwargs: Mapping[str, Any]  # create_model options (bn_axis_name added by the runner)
  data: DataSpec
  optimizer: OptimizerSpec
  schedule: ScheduleSpec
  step: StepSpec
  loop: LoopSpec
  # What a workdir and its checkpoints remember, as the boundary computed it:
  identity: Mapping[str, Any]  # the settings a resume must not change (name -> value)
  settings: Mapping[str, Any]  # every setting, flat ('model_options.shortcut' -> value, JSON)
  # Per part of the train state ('params', 'opt_state', ...), the settings (or sections, such
  # as 'model_options') that shape it: what a checkpoint that no longer fits is blamed on.
  state_shaping: Mapping[str, tuple]
  config_json: str            # the whole config, written as workdir/config.json and into each
                              # checkpoint's metadata (never read back by key here)
