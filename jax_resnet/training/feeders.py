"""How train steps get their batches: from the host through a prefetch queue of placed
batches (`HostFeeder`), or from a dataset held on the devices, several steps per dispatch
(`DeviceFeeder`); both report the input pipeline's state for the checkpoint."""

import collections

from jax_resnet import data


class DevicePrefetcher:
  """Keeps `size` batches on the devices ahead of the step, remembering the iterator state
  before each, so a checkpoint records exactly the batches consumed."""

  def __init__(self, iterator, place, size: int):
    self.iterator, self.place, self.size = iterator, place, max(1, size)
    self.queue = collections.deque()

  def _fill(self):
    while len(self.queue) < self.size:
      state = data.get_iterator_state(self.iterator)
      self.queue.append((state, self.place(next(self.iterator))))

  def next(self):
    self._fill()
    return self.queue.popleft()[1]

  def state(self):
    return self.queue[0][0] if self.queue else data.get_iterator_state(self.iterator)


class HostFeeder:
  """Batches from the host pipeline, one step per dispatch."""
  advance = 1

  def __init__(self, runner, prefetcher):
    self.runner, self.prefetcher = runner, prefetcher

  def step(self, state, rng):
    return self.runner.train_step(state, self.prefetcher.next(), rng)

  def state(self):
    return self.prefetcher.state()


class DeviceFeeder:
  """device_data: the train split on the devices, steps_per_dispatch steps a call."""

  def __init__(self, runner, placed_data, steps_per_dispatch):
    self.runner, self.data, self.advance = runner, placed_data, steps_per_dispatch

  def step(self, state, rng):
    return self.runner.multi_step(state, self.data, rng)

  def state(self):
    return {'device_data': True}  # the batch of step s is a function of (seed, s)


def make_feeder(spec, runner, data_state, process_index, process_count):
  if spec.loop.device_data:
    images, labels = data.train_arrays(spec.data)
    return DeviceFeeder(runner, runner.place_state({'image': images, 'label': labels}),
                        spec.loop.steps_per_dispatch)
  train_iter = data.train_iterator(spec.data, process_index=process_index,
                                   process_count=process_count)
  if data_state is not None:
    data.set_iterator_state(train_iter, data_state)
  return HostFeeder(runner, DevicePrefetcher(train_iter, runner.place_batch,
                                             spec.data.prefetch_batches))
