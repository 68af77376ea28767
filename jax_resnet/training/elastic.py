"""Resuming on another number of devices or processes, and what a resume that changes the
global batch must be asked for.

The train state is replicated and the pipeline's position is counted in global batches
(`data.pipeline`: process p of P reads its slice of global batch s, whatever P is), so neither
the device count nor the process count is part of a checkpoint: a run resumes on any number
of either whose global batch is the same (docs/training.md, "Elastic resume"). A different
global batch changes the learning-rate schedule's steps per epoch, the BatchNorm statistics
and the batches themselves, so it is refused unless `allow_batch_size_change` is set; then the
pipeline continues from the first example not yet trained on, rounded down to a whole batch.
"""

from typing import Optional

from jax_resnet.errors import TrainingError


def saved_batch_size(meta) -> Optional[int]:
  """The global batch a checkpoint was trained with (its saved config), if recorded."""
  config = (meta or {}).get('config') or {}
  value = config.get('batch_size')
  return int(value) if isinstance(value, int) else None


def resume_data_state(spec, step: int, meta, data_state):
  """The data iterator state to resume from: `data_state` itself when the global batch is
  the checkpoint's; refused (one line) when it changed and `spec.loop.allow_batch_size_change`
  is off; else the host pipeline's position in examples, carried to the new batch size."""
  saved, now = saved_batch_size(meta), spec.data.batch_size
  if meta is None or saved is None or saved == now:
    return data_state
  if not spec.loop.allow_batch_size_change:
    raise TrainingError(
        f'The checkpoint at step {step} was trained with a global batch_size={saved} and this '
        f'run has batch_size={now}: the batches, the BatchNorm statistics and the learning-rate '
        f'schedule would change mid-run. Resume with batch_size={saved}, or set '
        'allow_batch_size_change=True to continue with the new batch.')
  if not isinstance(data_state, dict) or 'batch_size' not in data_state:
    return data_state  # device_data: the batch of step s is drawn from (seed, s)
  examples = int(data_state['step']) * int(data_state['batch_size'])
  return dict(data_state, batch_size=now, step=examples // now)
