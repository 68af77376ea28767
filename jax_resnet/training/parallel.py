"""Data-parallel wrappers around the pure steps: `pmap` (the design's choice) and `jit` over
`shard_map` on a 1-D device mesh (JAX's successor). Both name the device axis 'batch', average
gradients and metrics over it, and donate the state buffers. One device works through either.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jax_resnet.errors import ConfigError

AXIS = 'batch'
PARALLELISMS = ('pmap', 'shard_map')


def check_divisible(global_batch: int, what: str = 'batch_size'):
  n = jax.device_count()
  if global_batch % n:
    raise ConfigError(f'{what}={global_batch} is not divisible by the {n} devices '
                      f'({jax.devices()[0].platform}); each device needs an equal share: use a '
                      f'multiple of {n}.')


class PmapRunner:
  """State replicated on every local device; batches split on a leading device axis."""

  def __init__(self, train_step, eval_step, devices=None):
    # devices=None maps over every process's devices (multi-host); a subset is for tests.
    self.devices = devices or jax.local_devices()
    self._train = jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None),
                           donate_argnums=(0,), devices=devices)
    self._eval = jax.pmap(eval_step, axis_name=AXIS, devices=devices)
    self._pmap_devices = devices
    self.sharding = NamedSharding(jax.sharding.Mesh(np.array(self.devices), (AXIS,)), P(AXIS))

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

  def train_step(self, state, batch, rng):
    return self._train(state, batch, rng)

  def eval_step(self, state, batch):
    return self._eval(state, batch)

  def set_multi_step(self, multi_step):
    """(state, data, rng) -> (state, metrics): data replicated like the state."""
    self._multi = jax.pmap(multi_step, axis_name=AXIS, in_axes=(0, 0, None),
                           donate_argnums=(0,), devices=self._pmap_devices)

  def multi_step(self, state, data, rng):
    return self._multi(state, data, rng)

  def to_host(self, tree):
    """One replica's copy, as numpy (replicas are equal after the pmean'd updates)."""
    def first_replica(x):
      shard = np.asarray(x.addressable_data(0))
      return shard[0] if shard.ndim == x.ndim else shard  # new pmap keeps the device axis
    return jax.tree.map(first_replica, tree)


class ShardMapRunner:
  """jit(shard_map(step)) over a 1-D mesh: state replicated (P()), batch sharded on 'batch'."""

  def __init__(self, train_step, eval_step, devices=None):
    devices = devices or jax.devices()
    axis_types = (jax.sharding.AxisType.Auto,)
    self.mesh = jax.make_mesh((len(devices),), (AXIS,), axis_types=axis_types, devices=devices)
    self.replicated = NamedSharding(self.mesh, P())
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    # check_vma=False: the per-replica semantics of pmap (which new JAX builds the same way),
    # so one step function, with explicit pmeans, serves both wrappers.
    train = jax.shard_map(train_step, mesh=self.mesh, in_specs=(P(), P(AXIS), P()),
                          out_specs=(P(), P()), check_vma=False)
    self._train = jax.jit(train, donate_argnums=(0,))
    self._eval = jax.jit(jax.shard_map(eval_step, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                                       out_specs=P(), check_vma=False))

  def place_state(self, state):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)), state)

  def place_batch(self, batch):
    return {k: jax.make_array_from_process_local_data(self.sharded, v) for k, v in batch.items()}

  def train_step(self, state, batch, rng):
    return self._train(state, batch, rng)

  def eval_step(self, state, batch):
    return self._eval(state, batch)

  def set_multi_step(self, multi_step):
    step = jax.shard_map(multi_step, mesh=self.mesh, in_specs=(P(), P(), P()),
                         out_specs=(P(), P()), check_vma=False)
    self._multi = jax.jit(step, donate_argnums=(0,))

  def multi_step(self, state, data, rng):
    return self._multi(state, data, rng)

  def to_host(self, tree):
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def make_runner(parallelism: str, train_step, eval_step, devices=None):
  """`devices` (default: all) lets tests compare device counts in one process."""
  if parallelism == 'pmap':
    return PmapRunner(train_step, eval_step, devices)
  if parallelism == 'shard_map':
    return ShardMapRunner(train_step, eval_step, devices)
  raise ConfigError(f'parallelism must be one of {", ".join(PARALLELISMS)}, got '
                    f'{parallelism!r}.')
