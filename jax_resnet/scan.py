"""Convert variables between the unrolled layout ('stageI_blockJ') and the `scan_blocks=True`
layout ('stageI_scan/block', blocks 2..n of a stage stacked on a leading axis). Both ways are
exact, so weights and checkpoints load into either form of the same model."""

import re

import jax
import numpy as np

_SCANNED = re.compile(r'^stage(\d+)_scan$')


def stack_blocks(variables, stage_sizes):
  """Unrolled -> scanned, for every collection ('params', 'batch_stats', ...)."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for stage, size in enumerate(stage_sizes, 1):
      names = [f'stage{stage}_block{j}' for j in range(2, size + 1)]
      if size > 1 and all(n in tree for n in names):
        blocks = [tree.pop(n) for n in names]
        tree[f'stage{stage}_scan'] = {'block': jax.tree.map(lambda *a: np.stack(a), *blocks)}
    out[collection] = tree
  return out


def unstack_blocks(variables):
  """Scanned -> unrolled."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for name in [n for n in tree if _SCANNED.match(n)]:
      stage = _SCANNED.match(name).group(1)
      stacked = tree.pop(name)['block']
      count = len(jax.tree.leaves(stacked)[0])
      for j in range(count):
        tree[f'stage{stage}_block{j + 2}'] = jax.tree.map(lambda a, j=j: np.asarray(a[j]), stacked)
    out[collection] = tree
  return out

