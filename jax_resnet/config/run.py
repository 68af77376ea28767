"""The trainer from a ConfigDict: the config layer on top of training."""

from jax_resnet.config.boundary import resolve


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` (a ConfigDict: jax_resnet.base_config() or a recipe) in `workdir`,
  resuming from its latest checkpoint; returns the summary written to workdir/summary.json
  ({'preempted_at_step': step} after SIGTERM). The config is resolved once, here
  (`boundary.resolve`); the run (`training.loop.train`) takes the RunSpec."""
  from jax_resnet.training import loop  # on use: it loads Orbax and the data pipeline
  return loop.train(resolve(config), workdir)
