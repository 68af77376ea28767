"""Metrics out: metrics.jsonl, TensorBoard events (tensorboardX, no TensorFlow), a tqdm bar.

Only process 0 writes; other processes get a writer that does nothing. A resumed run keeps one
row per step: rows past the restored step (written by a run killed before its next checkpoint,
and replayed now) are dropped from metrics.jsonl, and TensorBoard is told to purge them.
"""

import json
import os
import sys

import tqdm

from jax_resnet.training.workdir import storage_errors, write_atomic


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool, total_steps: int, initial_step: int,
               progress_bar: bool):
    self.enabled = enabled
    self.bar = None
    self.failed = False
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # imported here: only process 0 needs it
    path = os.path.join(workdir, 'metrics.jsonl')
    self.what = f'writing {path}'
    with storage_errors(self.what):
      _drop_rows_after(path, initial_step)
      self.jsonl = open(path, 'a')
      self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                                       purge_step=initial_step + 1)
    self.events_what = f'writing {os.path.join(workdir, "tensorboard")}'
    self.events_failures = _keep_event_file_errors(self.tensorboard)
    if progress_bar:
      self.bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit='step',
                           dynamic_ncols=True, file=sys.stderr)

  def write(self, step: int, split: str, scalars: dict):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self.failed = True  # until the row is written: close() then adds no second error
    with storage_errors(self.what):
      self.jsonl.write(json.dumps({'step': step, 'split': split, **scalars}) + '\n')
      self.jsonl.flush()
    self.failed = False
    for key, value in scalars.items():
      self.tensorboard.add_scalar(f'{split}/{key}', value, step)
    self.failed = bool(self.events_failures)
    self._raise_event_failure()

  def _raise_event_failure(self):
    """An error tensorboardX's writer thread met (kept, not raised there) as one line."""
    if self.events_failures:
      with storage_errors(self.events_what):
        raise self.events_failures[0]

  def progress(self, step: int, postfix: dict):
    if self.bar is not None:
      self.bar.update(step - self.bar.n)
      self.bar.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()}, refresh=True)

  def print(self, message: str):
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.write(message)
    else:
      print(message, flush=True)

  def close(self):
    if not self.enabled:
      return
    if self.bar is not None:
      self.bar.close()
    self.tensorboard.close()  # its file errors are kept, not raised (see below)
    try:
      self.jsonl.close()
    except OSError:  # a write that failed already said so; the buffer cannot be written
      pass
    if not self.failed:
      self._raise_event_failure()


def _keep_event_file_errors(summary_writer) -> list:
  """Makes the event file of a tensorboardX SummaryWriter keep its OSErrors (a disk that
  became full or read-only) in the returned list instead of raising them: they happen in
  tensorboardX's writer thread, in close() and again at exit, each printing a traceback. The
  trainer reports the first as one line. Once one happened, the file is left alone."""
  failures = []
  file_writer = getattr(summary_writer, 'file_writer', None) or summary_writer._get_file_writer()
  events = getattr(getattr(file_writer, 'event_writer', None), '_ev_writer', None)
  if events is None:  # another tensorboardX layout: its errors are raised as they were
    return failures
  for name in ('write_event', 'flush', 'close'):
    method = getattr(events, name)

    def kept(*args, _method=method, **kwargs):
      if failures:
        return None
      try:
        return _method(*args, **kwargs)
      except OSError as error:
        failures.append(error)
        return None

    setattr(events, name, kept)
  return failures


def _drop_rows_after(path: str, step: int):
  """Rewrites metrics.jsonl without the rows of steps after `step` (atomically)."""
  if not os.path.isfile(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if _row_step(line) <= step]
  if len(kept) != len(lines):
    write_atomic(path, ''.join(kept))


def _row_step(line: str) -> float:
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):  # a row cut short by a crash: dropped
    return float('inf')
