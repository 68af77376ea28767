"""A run's training curves as a picture: train/eval loss and accuracy from metrics.jsonl.

    path = plot_curves('runs/default')   # -> runs/default/curves.png
"""

import json
import os

CURVES_FILE = 'curves.png'


def read_curves(workdir: str) -> dict:
  """{'train': (steps, losses, accuracies), 'eval': (...)} from workdir/metrics.jsonl, the
  accuracy of a train interval being 1 - its mean error (the logged train metric) and an
  evaluation's its top-1. A resumed run's repeated steps keep the last row written."""
  rows = {'train': {}, 'eval': {}}
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):  # a run stopped before its first logged step
    return {split: ([], [], []) for split in rows}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if row.get('split') == 'train' and 'error' in row:
        rows['train'][row['step']] = (row['loss'], 1.0 - row['error'])
      elif row.get('split') == 'eval' and 'top1' in row:
        rows['eval'][row['step']] = (row['loss'], row['top1'])
  curves = {}
  for split, by_step in rows.items():
    steps = sorted(by_step)
    curves[split] = (steps, [by_step[s][0] for s in steps], [by_step[s][1] for s in steps])
  return curves


def plot_curves(workdir: str):
  """Writes workdir/curves.png (loss and accuracy against steps, train and eval) and returns its
  path; None when the run logged nothing to plot."""
  curves = read_curves(workdir)
  if not any(steps for steps, _, _ in curves.values()):
    return None
  import matplotlib
  matplotlib.use('Agg')  # file output only: no display on servers
  import matplotlib.pyplot as plt
  figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
  for split, marker in (('train', ''), ('eval', 'o')):
    steps, losses, accuracies = curves[split]
    if steps:
      loss_axes.plot(steps, losses, marker=marker, label=split)
      accuracy_axes.plot(steps, accuracies, marker=marker, label=split)
  for axes, name in ((loss_axes, 'loss'), (accuracy_axes, 'accuracy (train: 1 - error)')):
    axes.set_xlabel('step')
    axes.set_ylabel(name)
    axes.grid(alpha=0.3)
    axes.legend()
  figure.suptitle(os.path.basename(os.path.abspath(workdir)))
  figure.tight_layout()
  path = os.path.join(workdir, CURVES_FILE)
  figure.savefig(path, dpi=100)
  plt.close(figure)
  return path
