"""Data-parallel wrappers around the pure steps. `pmap` is the design's original choice;
`jit` over `shard_map` on a 1-D device mesh is JAX's recommended path. Both name the device
axis 'batch', average gradients and metrics over it, and donate the state buffers. One device
works through either.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_resnet.errors import TrainingError, check_choice

AXIS = 'batch'
PARALLELISMS = ('shard_map', 'pmap')  # the first is the trainer's default
STEP_KINDS = ('train', 'eval', 'multi')


def check_parallelism(parallelism: str):
  """make_runner's choices, checked without building anything (TrainingError, with choices)."""
  check_choice(TrainingError, 'parallelism', parallelism, PARALLELISMS)


class Runner:
  """What the trainer and the benchmark call. Steps are pure functions of
  train: (state, batch, rng) -> (state, metrics); eval: (state, batch) -> metric sums;
  multi: (state, data, rng) -> (state, metrics), `data` placed like the state (device_data).
  Subclasses say how a step is wrapped (`_wrap`) and how arrays are placed."""

  def __init__(self, train_step, eval_step):
    self._steps = {'train': self._wrap(train_step, 'train'),
                   'eval': self._wrap(eval_step, 'eval')}

  def _wrap(self, step, kind: str):
    raise NotImplementedError

  def place_state(self, state):
    """Host arrays -> the same value on every device (also used for device_data's data)."""
    raise NotImplementedError

  def place_batch(self, batch):
    """Host {name: (global batch, ...)} -> split over the devices on the leading axis."""
    raise NotImplementedError

  def to_host(self, tree):
    """Replicated device arrays -> one copy as numpy."""
    raise NotImplementedError

  def jitted(self, kind: str):
    """The compiled-on-first-call step ('train' | 'eval' | 'multi'), with `.lower(...)`."""
    if kind not in STEP_KINDS:
      raise ValueError(f'kind must be one of {", ".join(STEP_KINDS)}, got {kind!r}.')
    if kind not in self._steps:
      raise ValueError("this runner has no 'multi' step: device_data runs make one with "
                       'set_multi_step(multi_step) first.')
    return self._steps[kind]

  def set_multi_step(self, multi_step):
    self._steps['multi'] = self._wrap(multi_step, 'multi')

  def train_step(self, state, batch, rng):
    return self._steps['train'](state, batch, rng)

  def eval_step(self, state, batch):
    return self._steps['eval'](state, batch)

  def multi_step(self, state, data, rng):
    return self.jitted('multi')(state, data, rng)


class PmapRunner(Runner):
  """State replicated on every local device; batches split on a leading device axis."""

  def __init__(self, train_step, eval_step, devices=None):
    # devices=None maps over every process's devices (multi-host); a subset is for tests.
    self._pmap_devices = devices
    self.devices = devices or jax.local_devices()
    self.sharding = NamedSharding(jax.sharding.Mesh(np.array(self.devices), (AXIS,)), P(AXIS))
    super().__init__(train_step, eval_step)

  def _wrap(self, step, kind):
    if kind == 'eval':
      return jax.pmap(step, axis_name=AXIS, devices=self._pmap_devices)
    return jax.pmap(step, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,),
                    devices=self._pmap_devices)

  def _put(self, stacked):
    # A leading-axis sharding over this process's devices: what pmap splits its inputs by.
    # (jax.device_put_replicated/_sharded are gone in new JAX.)
    return jax.device_put(stacked, self.sharding)

  def place_state(self, state):
    n = len(self.devices)
    return jax.tree.map(lambda x: self._put(np.broadcast_to(x, (n,) + np.shape(x))), state)

  def place_batch(self, batch):
    n = len(self.devices)
    return {k: self._put(v.reshape((n, -1) + v.shape[1:])) for k, v in batch.items()}

  def to_host(self, tree):
    """One replica's copy, as numpy (replicas are equal after the pmean'd updates)."""
    def first_replica(x):
      shard = np.asarray(x.addressable_data(0))
      return shard[0] if shard.ndim == x.ndim else shard  # new pmap keeps the device axis
    return jax.tree.map(first_replica, tree)


# shard_map specs per step kind: (in_specs, out_specs). State, rng and device_data's data are
# replicated (P()); batches are split on the device axis.
_SPECS = {'train': ((P(), P(AXIS), P()), (P(), P())),
          'eval': ((P(), P(AXIS)), P()),
          'multi': ((P(), P(), P()), (P(), P()))}


class ShardMapRunner(Runner):
  """jit(shard_map(step)) over a 1-D mesh: state replicated (P()), batch sharded on 'batch'."""

  def __init__(self, train_step, eval_step, devices=None):
    devices = devices or jax.devices()
    axis_types = (jax.sharding.AxisType.Auto,)
    self.mesh = jax.make_mesh((len(devices),), (AXIS,), axis_types=axis_types, devices=devices)
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    super().__init__(train_step, eval_step)

  def _wrap(self, step, kind):
    in_specs, out_specs = _SPECS[kind]
    # check_vma=False: the per-replica semantics of pmap (which new JAX builds the same way),
    # so one step function, with explicit pmeans, serves both wrappers.
    mapped = jax.shard_map(step, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                           check_vma=False)
    return jax.jit(mapped) if kind == 'eval' else jax.jit(mapped, donate_argnums=(0,))

  def place_state(self, state):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), state)

  def place_batch(self, batch):
    return {k: jax.make_array_from_process_local_data(self.sharded, v) for k, v in batch.items()}

  def to_host(self, tree):
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def make_runner(parallelism: str, train_step, eval_step, devices=None) -> Runner:
  """`devices` (default: all) lets tests compare device counts in one process."""
  check_parallelism(parallelism)
  runner = PmapRunner if parallelism == 'pmap' else ShardMapRunner
  return runner(train_step, eval_step, devices)
