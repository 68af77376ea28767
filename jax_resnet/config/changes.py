"""What changed between the config a checkpoint was written with and this run's: the settings
named when a run resumes, and the ones blamed when a checkpoint no longer fits."""

from typing import Mapping

# The settings that shape each part of the saved train state (a checkpoint restores only into
# the same shapes): what a mismatch on resume is blamed on.
_MODEL_KEYS = ('model', 'model_options', 'num_classes', 'dtype', 'conv1x1', 'stem_conv')
STATE_SHAPING_KEYS = {
    'params': _MODEL_KEYS, 'batch_stats': _MODEL_KEYS, 'ema_params': _MODEL_KEYS + ('ema_decay',),
    'opt_state': _MODEL_KEYS + ('optimizer', 'momentum', 'nesterov', 'weight_decay',
                                'weight_decay_mode', 'decay_bn_and_bias'),
    'warming_up': ('warmup_lr',)}


def _flat_settings(mapping, prefix=''):
  flat = {}
  for key, value in (mapping or {}).items():
    if isinstance(value, Mapping):
      flat.update(_flat_settings(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _differences(saved_config, config):
  """(flat saved, flat now, sorted keys whose values differ)."""
  saved, now = _flat_settings(saved_config), _flat_settings(config)
  return saved, now, sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def changed_settings(saved_config, config) -> list:
  """'key: old -> new' for every setting that differs between two configs (dicts)."""
  saved, now, changed = _differences(saved_config, config)
  return [f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in changed]


def explain_state_mismatch(step, directory, paths, saved_config, config) -> str:
  """One line for a checkpoint whose tree differs from the config's: which settings changed
  (those that shape the differing parts first), and what to do."""
  saved, now, changed = _differences(saved_config, config)
  parts = sorted({path.split('/')[0] for path in paths})
  shaping = {key for part in parts for key in STATE_SHAPING_KEYS.get(part, ())}
  blamed = [k for k in changed if k.split('.')[0] in shaping] or changed
  settings = '; '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in blamed[:6])
  why = (f'settings changed since it was written ({settings})' if blamed else
         'no recorded setting changed, so the code that builds the state did')
  return (f'Checkpoint step {step} in {directory} holds a train state of another shape than '
          f'this config builds ({len(paths)} array(s) differ in {", ".join(parts)}, first '
          f'{paths[0]}): {why}. Rerun with the settings it was written with, or start a fresh '
          'run in a new --workdir.')
