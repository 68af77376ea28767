"""Metrics out: metrics.jsonl, TensorBoard events (tensorboardX, no TensorFlow), a tqdm bar.

Only process 0 writes; other processes get a writer that does nothing.
"""

import json
import os
import sys

import tqdm


class MetricWriter:

  def __init__(self, workdir: str, enabled: bool, total_steps: int, initial_step: int,
               progress_bar: bool):
    self.enabled = enabled
    self.bar = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # imported here: only process 0 needs it
    self.jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    if progress_bar:
      self.bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit='step',
                           dynamic_ncols=True, file=sys.stderr)

  def write(self, step: int, split: str, scalars: dict):
    if not self.enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self.jsonl.write(json.dumps({'step': step, 'split': split, **scalars}) + '\n')
    self.jsonl.flush()
    for key, value in scalars.items():
      self.tensorboard.add_scalar(f'{split}/{key}', value, step)

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
    self.tensorboard.close()
    self.jsonl.close()
