"""The trainer from a ConfigDict: the config layer on top of training."""

from jax_resnet.config.boundary import resolve


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` (a ConfigDict: jax_resnet.base_config() or a recipe) in `workdir`,
  resuming from its latest checkpoint; returns the summary written to workdir/summary.json
  ({'preempted_at_step': step} after SIGTERM). The config is resolved once, here
  (`boundary.resolve`); the run (`training.loop.train`) takes the RunSpec."""
  from jax_resnet.training import loop  # on use: it loads Orbax and the data pipeline
  return loop.train(resolve(config), workdir)


def eval_preprocessing(workdir: str):
  """What the eval pipeline of the run in `workdir` does to an image (a
  `data.eval_record.EvalPreprocessing`): the record the run wrote, else, for a workdir written
  before runs recorded it, the one its config.json rebuilds (a per-pixel mean computed again
  from the dataset). One ConfigError line when neither can be had."""
  import os
  from jax_resnet.config.boundary import from_json
  from jax_resnet.data import eval_record
  from jax_resnet.errors import ConfigError, UserError
  record = eval_record.read(workdir)
  if record is not None:
    return record
  path = os.path.join(workdir, 'config.json')
  lacking = f'{workdir} has no {eval_record.RECORD_FILE} (a run of an older version)'
  try:
    with open(path) as f:
      text = f.read()
  except OSError as error:
    raise ConfigError(f'{lacking} and {path} cannot be read ({error.strerror}), so how its '
                      'images were fed is unknown: pass a workdir written by train.py.') from None
  try:
    return eval_record.of_spec(resolve(from_json(text)).data)
  except (UserError, ValueError, OSError) as error:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise ConfigError(f'{lacking} and rebuilding it from its config.json failed ({reason}); '
                      'rerun the training there with this version to record it.') from None



def trained_image_size(workdir: str):
  """The image size the run in `workdir` was configured with (its config.json's
  `image_size`), or None when `workdir` holds no readable trainer config."""
  import json
  import os
  path = os.path.join(workdir, 'config.json') if workdir else ''
  if not path or not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f).get('image_size')
