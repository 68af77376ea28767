"""report.md writer: the exact command, versions, date and machine, then tables and plots.

Every command also writes results.json with the numbers of its tables, for notebooks.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time

import numpy as np

from jax_resnet.analysis.common import fmt

# Set by the CLI when a command starts; a report made in a notebook times from its creation.
COMMAND_STARTED = None
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'matplotlib', 'jax_resnet')


def versions() -> dict:
  found = {'python': platform.python_version()}
  for name in _PACKAGES:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      if name == 'jax_resnet':
        import jax_resnet
        found[name] = jax_resnet.__version__
  return found


def machine() -> str:
  import jax
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  return (f'{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores visible, '
          f'JAX backend {device.platform} ({kind}) x {jax.device_count()}')


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend (no display on servers)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


class Report:
  """Collects markdown parts; `write()` puts report.md, results.json and the PNGs in `out`."""

  def __init__(self, out: str, title: str, argv=None):
    self.out, self.title = out, title
    self.argv = list(sys.argv[1:] if argv is None else argv)
    self.parts, self.started = [], COMMAND_STARTED or time.time()
    os.makedirs(out, exist_ok=True)

  def text(self, markdown: str):
    self.parts.append(markdown.strip() + '\n')

  def table(self, headers, rows, caption: str = ''):
    lines = ([f'**{caption}**', ''] if caption else [])
    cell = lambda v: fmt(v).replace('|', '\\|')  # a bare | would split the cell
    lines.append('| ' + ' | '.join(cell(h) for h in headers) + ' |')
    lines.append('|' + ' --- |' * len(headers))
    for row in rows:
      lines.append('| ' + ' | '.join(cell(v) for v in row) + ' |')
    self.parts.append('\n'.join(lines) + '\n')

  def figure(self, fig, filename: str, caption: str):
    path = os.path.join(self.out, filename)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    pyplot().close(fig)
    self.parts.append(f'![{caption}]({filename})\n\n*{caption}*\n')
    return path

  def header(self) -> str:
    command = 'python -m jax_resnet.analysis ' + shlex.join(self.argv)
    date = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    version_text = ', '.join(f'{k} {v}' for k, v in versions().items())
    return (f'# {self.title}\n\n'
            f'- Command: `{command}`\n'
            f'- Date: {date}\n'
            f'- Machine: {machine()}\n'
            f'- Versions: {version_text}\n'
            f'- Wall time: {time.time() - self.started:.1f} s\n')

  def write(self, results: dict) -> str:
    path = os.path.join(self.out, 'report.md')
    with open(path, 'w') as f:
      f.write(self.header() + '\n' + '\n'.join(self.parts))
    with open(os.path.join(self.out, 'results.json'), 'w') as f:
      json.dump(to_jsonable(results), f, indent=1)
    return path


def to_jsonable(value):
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, (np.floating, float)):
    return float(value)
  if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
    return int(value)
  if hasattr(value, 'tolist'):
    return to_jsonable(np.asarray(value).tolist())
  return value
