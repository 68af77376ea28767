"""What changed between the settings a checkpoint was written with (its metadata's config) and
this run's (`RunSpec.settings`): the settings named when a run resumes, and the ones blamed
when a checkpoint no longer fits (`RunSpec.state_shaping` says which shape which part)."""

from typing import Mapping


def flat_settings(mapping, prefix='') -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}: a saved config as flat settings."""
  flat = {}
  for key, value in (mapping or {}).items():
    if isinstance(value, Mapping):
      flat.update(flat_settings(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _differences(saved_config, settings):
  """(flat saved, flat now, sorted names whose values differ)."""
  saved, now = flat_settings(saved_config), flat_settings(settings)
  return saved, now, sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def changed_settings(saved_config, settings) -> list:
  """'name: old -> new' for every setting that differs between a saved config (nested, as a
  checkpoint holds it) and this run's settings."""
  saved, now, changed = _differences(saved_config, settings)
  return [f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in changed]


def _within(name, sections):
  """Whether setting `name` is one of `sections` or inside one ('model_options.x')."""
  return any(name == s or name.startswith(s + '.') for s in sections)


def explain_state_mismatch(step, directory, paths, saved_config, settings,
                           state_shaping) -> str:
  """One line for a checkpoint whose tree differs from the run's: which settings changed
  (those that shape the differing parts first), and what to do."""
  saved, now, changed = _differences(saved_config, settings)
  parts = sorted({path.split('/')[0] for path in paths})
  shaping = {name for part in parts for name in state_shaping.get(part, ())}
  blamed = [k for k in changed if _within(k, shaping)] or changed
  listed = '; '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in blamed[:6])
  why = (f'settings changed since it was written ({listed})' if blamed else
         'no recorded setting changed, so the code that builds the state did')
  return (f'Checkpoint step {step} in {directory} holds a train state of another shape than '
          f'this config builds ({len(paths)} array(s) differ in {", ".join(parts)}, first '
          f'{paths[0]}): {why}. Rerun with the settings it was written with, or start a fresh '
          'run in a new --workdir.')


def mismatch_explainer(spec):
  """`explain_mismatch` for CheckpointReader.restore: blames `spec`'s changed settings."""
  return lambda step, directory, paths, meta: explain_state_mismatch(
      step, directory, paths, meta.get('config'), spec.settings, spec.state_shaping)
