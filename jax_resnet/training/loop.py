"""`train(spec, workdir)`: the whole run from a RunSpec (`jax_resnet.config.train_and_evaluate`
resolves a ConfigDict into one and calls it).

The host blocks on the devices only at log, eval and checkpoint intervals; in between, steps
are dispatched asynchronously and their metrics stay on the device.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet import data
from jax_resnet.errors import TrainingError, UserError
from jax_resnet.scan import stack_blocks
from jax_resnet.training import (changes, data_records, elastic, loss_scale, setup,
                                 workdir as workdir_lib)
from jax_resnet.training.checkpoints import Checkpoints, flat_arrays
from jax_resnet.training.feeders import make_feeder
from jax_resnet.training.logs import MetricWriter
from jax_resnet.training.signals import Interrupted, Preemption  # noqa: F401 (public here)
from jax_resnet.training.spec import RunSpec


class TrainingDivergedError(TrainingError):
  """The loss or gradients became non-finite."""


def evaluate(runner, state, data_spec, process_index=0, process_count=1, max_batches=0,
             stop=lambda: False):
  """Top-1, mean loss, example count and the count of examples with non-finite logits (the
  loss is NaN then) over the eval split (the first max_batches if > 0); None when `stop()`
  turns true between batches (a preemption abandons the evaluation)."""
  totals = None
  batches = data.eval_batches(data_spec, process_index=process_index,
                              process_count=process_count)
  for index, batch in enumerate(batches):
    if max_batches and index == max_batches:
      break
    if stop():
      return None
    sums = runner.eval_step(state, runner.place_batch(batch))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  if totals is None:
    raise TrainingError(f'The eval split {data_spec.eval_split!r} of {data_spec.dataset!r} gave '
                        'no examples; evaluate on a split that has some (--config.eval_split).')
  totals = runner.to_host(totals)
  count = float(totals['count'])
  return {'top1': float(totals['correct']) / count, 'loss': float(totals['loss_sum']) / count,
          'count': count, 'nonfinite_logits': float(totals['nonfinite'])}


def _initial_state(spec, parts, image_shape, checkpoints):
  """(step, host state, data state, the restored checkpoint's meta or None)."""
  host_state = setup.host_state(spec, parts.model, parts.tx, image_shape)
  restored = checkpoints.restore(host_state, changes.mismatch_explainer(spec))
  if restored is None:
    return 0, _load_pretrained(spec, parts.model, host_state), None, None
  return restored


def _load_pretrained(spec, model, host_state):
  """init_from: start from pretrained weights (a resumed run uses its checkpoint)."""
  loop = spec.loop
  if not loop.init_from:
    return host_state
  from jax_resnet import weights  # torch-free unless the file is a .pth
  from jax_resnet.weights.files import select_head
  from jax_resnet.weights.loader import read_pretrained  # any source: tag, file, workdir
  try:
    found = read_pretrained(loop.init_from, spec.model)
  except weights.WeightsMismatchError as error:
    if error.holds is None or error.holds == spec.model:
      raise
    raise weights.WeightsMismatchError(
        f'init_from={loop.init_from!r} holds {error.holds} weights but model={spec.model!r}.',
        holds=error.holds) from None
  pretrained = select_head(found.variables, model.num_classes, loop.init_reinit_head,
                           found.source)
  if getattr(model, 'scan_blocks', False):
    pretrained = stack_blocks(pretrained, model.stage_sizes)
  fresh = {'params': host_state.params, 'batch_stats': host_state.batch_stats}
  merged = weights.merge_pretrained(fresh, pretrained, reinit_head=loop.init_reinit_head)
  ema = merged['params'] if host_state.ema_params is not None else None
  return host_state.replace(params=merged['params'], batch_stats=merged.get('batch_stats', {}),
                            ema_params=ema)


def _flush_metrics(pending, runner, first_step, skip_nonfinite):
  """Fetches the metrics of steps [first_step, first_step + len(pending)) at once. Returns
  (means, first non-finite step or None); skipped steps are left out of the means."""
  history = []
  for m in map(runner.to_host, pending):  # a device_data dispatch stacks several steps
    count = int(np.size(m['loss']))
    history.extend({k: np.reshape(v, (count,))[i] for k, v in m.items()} for i in range(count))
  finite = [bool(np.isfinite(m['loss']) and m['grads_finite'] > 0) for m in history]
  good = [m for m, ok in zip(history, finite) if ok]
  if not all(finite) and not (skip_nonfinite or 'loss_scale' in history[0]):  # float16 skips
    return None, first_step + finite.index(False)
  means = {k: float(np.mean([m[k] for m in good])) if good else float('nan')
           for k in ('loss', 'error')}
  means['learning_rate'] = float(history[-1]['learning_rate'])
  means['skipped_updates'] = float(len(history) - len(good))
  if 'loss_scale' in history[-1]:
    means['loss_scale'] = float(history[-1]['loss_scale'])
  return means, None


def train(spec: RunSpec, workdir: str) -> dict:
  """Trains `spec` in `workdir`, resuming from its latest checkpoint; returns the summary
  written to workdir/summary.json ({'preempted_at_step': step} after SIGTERM). A refusal (bad
  input found before the run starts) leaves nothing behind in the workdir."""
  start_time = time.time()
  preemption = Preemption()
  try:
    created = workdir_lib.create(workdir) if jax.process_index() == 0 else []
    lock = workdir_lib.WorkdirLock(workdir).acquire() if jax.process_index() == 0 else None
    started = []
    try:
      return _train_locked(spec, workdir, start_time, preemption, started)
    except UserError:
      if not started:
        workdir_lib.remove_created(created)
      raise
    finally:
      if lock is not None:
        lock.release()
  finally:
    preemption.restore()


def _check_dispatch(spec, step, total):
  """device_data runs whole dispatches: the steps left must be a multiple of the dispatch."""
  per_dispatch = spec.loop.steps_per_dispatch
  if spec.loop.device_data and step < total and (total - step) % per_dispatch:
    raise TrainingError(
        f'The checkpoint is at step {step}, so {total - step} steps are left to '
        f'num_train_steps={total}, not a multiple of steps_per_dispatch={per_dispatch} (the '
        'last dispatch would overshoot); resume with a steps_per_dispatch that divides '
        f'{total - step}.')


def _finished_summary(workdir, step):
  """The summary.json of a run that finished at `step`, if the workdir holds it."""
  try:
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return None
  return summary if isinstance(summary, dict) and summary.get('steps') == step else None


def _train_locked(spec, workdir, start_time, preemption, started):
  workdir_lib.check_config(spec, workdir)
  spec = data_records.with_recorded_split(spec, workdir)  # a folder's files, as first listed
  info = data.dataset_info(spec.data)
  setup.check_against_dataset(spec, info)
  parts = setup.build_run(spec, info.num_train)
  checkpoints = Checkpoints(os.path.join(workdir, 'checkpoints'), spec.loop.keep_checkpoints)
  step, host_state, data_state, meta = _initial_state(spec, parts, info.image_shape, checkpoints)
  data_state = elastic.resume_data_state(spec, step, meta, data_state)
  total = parts.total_steps
  say = print if jax.process_index() == 0 else (lambda *_, **__: None)
  if step >= total:
    summary = _finished_summary(workdir, step)
    if summary is not None:
      say(f'jax_resnet: nothing to train: {os.path.abspath(workdir)} finished at step {step} '
          f'and this config trains {total} steps; its summary.json is kept.', flush=True)
      return summary
  _check_dispatch(spec, step, total)
  process_index, process_count = jax.process_index(), jax.process_count()
  runner = parts.runner
  feeder = make_feeder(spec, runner, data_state if not spec.loop.device_data else None,
                       process_index, process_count)
  workdir_lib.write_config(spec, workdir)  # the resume is accepted: record its settings
  data_records.write(spec, workdir, say)  # class_names.json, a folder's split.json
  workdir_lib.write_eval_preprocessing(spec, workdir)  # how readers must feed its images
  started.append(step)
  changed = changes.changed_settings((meta or {}).get('config'), spec.settings)
  if meta is not None and (meta or {}).get('config') is not None and changed:
    say(f'jax_resnet: settings changed since checkpoint step {step} was written: '
        f'{"; ".join(changed)}.', flush=True)
  if preemption.due():
    say(f'{preemption.signal_name} before training started: nothing was lost ('
        + (f'checkpoint step {step} is intact' if meta is not None else 'no step was trained')
        + '); rerun the same command to resume.', flush=True)
    return {'preempted_at_step': step}
  state = runner.place_state(host_state)
  writer = MetricWriter(workdir, process_index == 0, total, step, spec.loop.progress_bar)
  if step >= total:
    writer.print(f'jax_resnet: nothing to train: the checkpoint in {os.path.abspath(workdir)} '
                 f'is at step {step}, at or past the {total} steps this config trains; '
                 'evaluating it.')
  else:
    writer.print(f'jax_resnet: training {spec.model} on {spec.data.dataset} for {total} steps '
                 f'on {jax.device_count()} {jax.devices()[0].platform} device(s) '
                 f'({spec.loop.parallelism}); workdir {os.path.abspath(workdir)}'
                 + (f', resumed at step {step}' if step else ''))
  run = _Run(spec, workdir, parts, checkpoints, writer)
  try:
    summary = run.loop(state, step, feeder, start_time, preemption)
  finally:
    checkpoints.wait()
    writer.close()
  return summary


def _crossed(previous: int, step: int, interval: int) -> bool:
  """Whether going from step `previous` to `step` passed a multiple of `interval`."""
  return step // interval > previous // interval


class _Run:
  """The step loop and its interval work: logging, evaluation, checkpoints, preemption."""

  def __init__(self, spec, workdir, parts, checkpoints, writer):
    self.spec, self.workdir, self.parts, self.runner = spec, workdir, parts, parts.runner
    self.checkpoints, self.writer = checkpoints, writer
    self.eval_every = spec.loop.eval_every_steps or parts.steps_per_epoch
    self.rng = jax.random.fold_in(jax.random.key(spec.loop.seed), 1)  # key(seed) itself inits
    self.throughput = []
    self.skipped = 0     # updates skipped (skip_nonfinite_updates) since this run started
    self.loss_scaled = False  # float16 dynamic loss scaling: skips are the scaler's own
    self.first_step = 0  # the step this run started from

  def _where(self):
    last = self.checkpoints.latest_step()
    return (f'the last good checkpoint is step {last} in {self.checkpoints.directory}'
            if last is not None else 'no checkpoint was written yet')

  def _save(self, state, step, feeder):
    """Saves only a finite state: a diverged run must not rotate good checkpoints out."""
    host_state = self.runner.to_host(state)
    bad = [name for name, leaf in flat_arrays(host_state).items()
           if jnp.issubdtype(leaf.dtype, jnp.inexact) and not np.all(np.isfinite(leaf))]
    if bad:
      raise TrainingDivergedError(
          f'The train state at step {step} holds non-finite values ({len(bad)} array(s), first '
          f'{bad[0]}); not saving it ({self._where()}). Lower the learning rate or check the '
          'input data.')
    meta = {'step': step, 'model': self.spec.model, 'dataset': self.spec.data.dataset,
            'config': json.loads(self.spec.config_json)}
    self.checkpoints.save(step, host_state, feeder.state(), meta)

  def _checked_means(self, pending, first_step):
    """The metrics since first_step; raises if one is non-finite and skipping is off."""
    means, bad_step = _flush_metrics(pending, self.runner, first_step,
                                     self.spec.step.skip_nonfinite_updates)
    if bad_step is not None:
      raise TrainingDivergedError(
          f'Loss or gradients became non-finite at step {bad_step + 1}; stopping '
          f'({self._where()}). Lower the learning rate, add warmup, check the input data, or '
          'set skip_nonfinite_updates=True to skip such steps.')
    return means

  def _log(self, pending, first_step, step, tick):
    means = self._checked_means(pending, first_step)
    interval_seconds = time.time() - tick  # after the fetch: dispatch is asynchronous
    steps_done = step - first_step
    images_per_second = steps_done * self.spec.data.batch_size / max(interval_seconds, 1e-9)
    self.throughput.append(images_per_second)
    self.skipped += int(means['skipped_updates'])
    self.loss_scaled = 'loss_scale' in means
    means['images_per_second'] = images_per_second
    self.writer.write(step, 'train', means)
    self.writer.progress(step, {'loss': means['loss'], 'img/s': images_per_second})

  def _eval(self, state, step, stop):
    """The eval metrics, written; None if a preemption abandoned the evaluation."""
    result = evaluate(self.runner, state, self.spec.data, jax.process_index(),
                      jax.process_count(), self.spec.loop.eval_max_batches, stop=stop)
    if result is None:
      self.writer.print(f'Stop requested during evaluation at step {step}: evaluation '
                        'abandoned.')
      return None
    self.writer.write(step, 'eval', result)
    bad = int(result['nonfinite_logits'])
    self.writer.print(f'step {step}: eval top1 {result["top1"]:.4f}, loss {result["loss"]:.4f} '
                      f'({int(result["count"])} examples'
                      + (f'; {bad} gave non-finite logits, counted wrong' if bad else '') + ')')
    return result

  def _preempted(self, state, step, feeder, preemption):
    if self.checkpoints.latest_step() != step:
      self._save(state, step, feeder)
    self.checkpoints.wait()  # committed before saying so
    self.writer.print(f'{preemption.signal_name}: saved a checkpoint at step {step} in '
                      f'{self.checkpoints.directory}; rerun the same command to resume.')
    return {'preempted_at_step': step}

  def loop(self, state, step, feeder, start_time, preemption):
    intervals, total = self.spec.loop, self.parts.total_steps
    pending, first, tick = [], step, time.time()
    self.first_step = step
    while step < total:
      state, metrics = feeder.step(state, self.rng)
      pending.append(metrics)
      previous, step = step, step + feeder.advance
      preempted = preemption.due()  # read once: a signal may land mid-iteration
      save_due = _crossed(previous, step, intervals.checkpoint_every_steps) or preempted
      log_due = (_crossed(previous, step, intervals.log_every_steps) or step == total
                 or preempted)
      eval_due = _crossed(previous, step, self.eval_every) and step < total and not preempted
      if log_due or eval_due:  # flush first, so eval time stays out of the throughput
        self._log(pending, first, step, tick)
        pending, first = [], step
      elif save_due:  # every step since the last check must be finite before a save
        self._checked_means(pending, first)
      if eval_due and self._eval(state, step, preemption.due) is None:
        preempted = True
      if preempted:
        return self._preempted(state, step, feeder, preemption)
      if save_due:
        self._save(state, step, feeder)
      if not pending:
        tick = time.time()
    return self._finish(state, step, feeder, start_time, preemption)

  def _finish(self, state, step, feeder, start_time, preemption):
    # Under float16 loss scaling a skipped step is the scaler at work (its scale halves until
    # the gradients fit), not a sign of bad data: such a run may skip every step it ran.
    if self.skipped and self.skipped == step - self.first_step and not self.loss_scaled:
      raise TrainingDivergedError(
          f'Every update of this run was skipped ({self.skipped} of {self.skipped} steps had a '
          'non-finite loss or gradients; skip_nonfinite_updates=True), so the weights did not '
          f'change and the run is not done ({self._where()}). Check the input data for NaN or '
          'inf, or lower the learning rate.')
    result = self._eval(state, step, preemption.due)
    if result is None:
      return self._preempted(state, step, feeder, preemption)
    if self.checkpoints.latest_step() != step:
      self._save(state, step, feeder)
    self.checkpoints.wait()  # summary.json only once the final checkpoint is committed
    # The first interval holds the compilation; leave it out when there are others.
    rates = self.throughput[1:] or self.throughput
    summary = {
        'final_eval_top1': result['top1'], 'final_eval_loss': result['loss'],
        'eval_examples': int(result['count']), 'steps': step,
        'wall_seconds': time.time() - start_time,
        'train_images_per_second': float(np.median(rates)) if rates else 0.0,
        'model': self.spec.model, 'dataset': self.spec.data.dataset,
        'devices': jax.device_count(), 'parallelism': self.spec.loop.parallelism,
        'skipped_updates': self.skipped,
        **loss_scale.summary(self.runner.to_host(state.loss_scale)),
        'eval_nonfinite_logits': int(result['nonfinite_logits']),
    }
    if jax.process_index() == 0:
      path = os.path.join(self.workdir, 'summary.json')
      with workdir_lib.storage_errors(f'writing {path}'):
        workdir_lib.write_atomic(path, json.dumps(summary, indent=2))
    self.writer.print(f'done: eval top1 {summary["final_eval_top1"]:.4f} after {step} steps, '
                      f'{summary["wall_seconds"]:.0f} s; logs, checkpoints and summary.json in '
                      f'{os.path.abspath(self.workdir)}')
    return summary
