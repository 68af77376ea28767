"""Orbax checkpoints of the train state, the data iterator state and run metadata.

Saves are asynchronous and finished before exit; `max_to_keep` removes old steps only after a
newer one is complete. A checkpoint that cannot be read is reported by step and skipped in
favour of the previous one.
"""

import logging
import os
import time

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpoints:

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=('state', 'data', 'meta'))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, data_state, meta) -> bool:
    """Saves asynchronously; the trainer decides when (force=True bypasses Orbax's policy)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state),
                              meta=ocp.args.JsonSave(meta))
    return self.manager.save(step, args=args, force=True)

  def restore(self, template_state):
    """Newest readable checkpoint as (step, state, data_state, meta), or None if none exist."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      args = ocp.args.Composite(state=ocp.args.StandardRestore(template_state),
                                data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
      try:
        restored = self.manager.restore(step, args=args)
      except Exception as error:  # any unreadable file means: try an older one
        reason = f'{type(error).__name__}: {(str(error).splitlines() or [""])[0][:200]}'
        moved = self._set_aside(step)
        log.warning('checkpoint step %d in %s is unreadable (%s); moved it to %s and trying the '
                    'previous one.', step, self.directory, reason, moved)
        continue
      return step, restored['state'], restored['data'], restored['meta']
    return None

  def _set_aside(self, step: int) -> str:
    """Moves a bad step out of the manager's view (never deleted: it may hold what a person
    wants to recover), so a new save of the same step can happen."""
    target = os.path.join(os.path.dirname(self.directory), 'checkpoints_unreadable',
                          f'{step}.{time.strftime("%Y%m%d-%H%M%S")}')
    if jax.process_index() == 0:  # one writer on a shared filesystem
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.replace(os.path.join(self.directory, str(step)), target)
    self.manager.reload()
    return target

  def wait(self):
    self.manager.wait_until_finished()
