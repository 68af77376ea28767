"""Training: pure steps, data-parallel wrappers, the loop, checkpoints and logs."""

from jax_resnet.training.steps import (TrainState, create_train_state, make_eval_step,
                                       make_train_step)


def train_and_evaluate(config, workdir: str) -> dict:
  """See `jax_resnet.training.loop.train_and_evaluate` (imported on use: it pulls in the data
  pipeline, which the steps alone do not need)."""
  from jax_resnet.training.loop import train_and_evaluate as run
  return run(config, workdir)


__all__ = ['TrainState', 'create_train_state', 'make_eval_step', 'make_train_step',
           'train_and_evaluate']
