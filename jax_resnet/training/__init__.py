"""Training: pure steps, data-parallel runners, the loop, checkpoints and logs.

Everything here takes plain values (no config): the steps and optimizers as below, the whole
run as `loop.train(spec, workdir)` from a `spec.RunSpec`. From a ConfigDict (a recipe), the
layer above resolves it first: `jax_resnet.config.train_and_evaluate(config, workdir)`.
"""

from jax_resnet.training.optim import make_optimizer, make_schedule
from jax_resnet.training.steps import (TrainState, create_train_state, make_eval_step,
                                       make_train_step)

__all__ = ['TrainState', 'create_train_state', 'make_eval_step', 'make_optimizer',
           'make_schedule', 'make_train_step']
