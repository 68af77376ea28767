"""Stop requests: SIGTERM (preemption) and Ctrl-C end a run at a step boundary with a
checkpoint, never in the middle of a write."""

import signal

import jax

from jax_resnet.errors import TrainingError


class Interrupted(TrainingError):
  """A second Ctrl-C: stop at once, without saving."""


class Preemption:
  """SIGTERM, and Ctrl-C (SIGINT) alike, ask the run to checkpoint the current step and return
  cleanly; a second Ctrl-C stops at once. Installed before setup, so a signal during restore or
  compilation is honoured too. One process: a Python handler sets a flag. Several: JAX's
  preemption service (jax.distributed installs its SIGTERM notifier and shares the notice), so
  every process stops at the same sync point even when only one received the signal; Ctrl-C
  there is left to Python. `due()` is called at the same points by every process."""

  def __init__(self):
    self.requested = False
    self.signal_name = 'SIGTERM'
    self.calls = 0
    self.multihost = jax.process_count() > 1
    self._previous = {}
    if not self.multihost:  # a Python handler would replace the service's notifier
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT and self.signal_name == 'SIGINT':
      raise Interrupted('Interrupted twice (Ctrl-C): stopped at once without saving; rerun the '
                        'same command to resume from the newest checkpoint.')
    self.requested = True
    self.signal_name = signal.Signals(signum).name

  def due(self) -> bool:
    if not self.multihost:
      return self.requested
    from jax.experimental import multihost_utils
    self.calls += 1  # the sync protocol counts calls; every process makes the same ones
    try:
      self.requested = multihost_utils.reached_preemption_sync_point(self.calls)
    except RuntimeError:  # the preemption service is switched off: no notice can come
      return False
    return self.requested

  def restore(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
