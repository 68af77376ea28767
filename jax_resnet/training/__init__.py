"""Training: pure steps, data-parallel runners, the loop, checkpoints and logs.

The steps take plain values (no config); `train_and_evaluate(config, workdir)` is the trainer:
it resolves the config once (jax_resnet.config.resolve) and runs.
"""

from jax_resnet.training.optim import make_optimizer, make_schedule
from jax_resnet.training.steps import (TrainState, create_train_state, make_eval_step,
                                       make_train_step)


def train_and_evaluate(config, workdir: str) -> dict:
  """See `jax_resnet.training.loop.train_and_evaluate` (imported on use: it pulls in the data
  pipeline, which the steps alone do not need)."""
  from jax_resnet.training.loop import train_and_evaluate as run
  return run(config, workdir)


__all__ = ['TrainState', 'create_train_state', 'make_eval_step', 'make_optimizer',
           'make_schedule', 'make_train_step', 'train_and_evaluate']
