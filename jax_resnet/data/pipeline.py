"""The grain pipelines: a resumable, per-process sharded, infinite training iterator and a
padded single pass over the eval set.

Layout of the training stream (independent of process_count and num_workers): global position
t = epoch * N + i holds example shuffle_epoch(i) of the N training examples, augmented with an
RNG seeded by (spec.seed, t). Global batch s is positions [s*B, (s+1)*B); process p reads the
slice [s*B + p*B/P, s*B + (p+1)*B/P). Batches run across epoch boundaries (nothing is dropped),
so an iterator's whole state is the number of batches it has yielded.
"""

import dataclasses
import functools
import math
import numbers

import numpy as np

from jax_resnet.data import folder
from jax_resnet.data import sources as sources_lib
from jax_resnet.data import stats
from jax_resnet.data import tfds_source
from jax_resnet.data import transforms
from jax_resnet.data.spec import SYNTHETIC_NUM_CLASSES, DataSpec
from jax_resnet.errors import DataError

STATE_VERSION = 1
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


@dataclasses.dataclass(frozen=True, eq=False)
class _Resolved:
  sources: sources_lib.Sources
  info: sources_lib.DatasetInfo
  preprocess: transforms.Preprocess


def _derived_seed(seed, stream):
  """A 32-bit seed per (spec.seed, stream); hashing keeps seed s's epoch e+1 shuffle from
  equalling seed s+1's epoch e shuffle (grain adds the epoch to the seed)."""
  entropy = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
  return int(np.random.SeedSequence([entropy, stream]).generate_state(1)[0])


def _open_sources(spec: DataSpec):
  """Sources for the dataset fields of `spec`."""
  if folder.is_folder(spec.dataset):  # its held-out split is stratified, drawn there
    return folder.folder_sources(spec)
  holdout = spec.holdout_size
  eval_split = None if holdout > 0 else spec.eval_split
  if spec.dataset == 'digits':
    srcs = sources_lib.digits_sources((spec.train_split, eval_split or 'test'), spec.image_size)
  elif spec.dataset == 'synthetic':
    srcs = sources_lib.synthetic_sources(spec.image_size,
                                         spec.num_classes or SYNTHETIC_NUM_CLASSES)
  else:
    srcs = tfds_source.tfds_sources(spec.dataset, spec.data_dir, (spec.train_split, eval_split))
  if holdout > 0:
    if holdout >= len(srcs.train):
      raise DataError(
          f'holdout_size={holdout} leaves no training examples: the train split has '
          f'{len(srcs.train)}; use a smaller holdout (e.g. 5000 of CIFAR-10\'s 50000)')
    srcs = sources_lib.with_holdout(srcs, holdout)
  return srcs


def _normalizer(spec: DataSpec, srcs, base):
  if spec.normalize == 'mean_std':
    return transforms.Normalizer(np.float32(spec.mean), np.float32(spec.std))
  if spec.normalize == 'per_pixel_mean':
    if spec.dataset == 'synthetic':  # uniform random pixels: the expected mean is exact
      return transforms.Normalizer(np.float32(0.5))
    return transforms.Normalizer(stats.per_pixel_mean(srcs, base))
  return transforms.Normalizer()


@functools.lru_cache(maxsize=8)
def _resolve_cached(spec: DataSpec):
  srcs = _open_sources(spec)
  base = transforms.Preprocess(spec.image_size, spec.augment, spec.crop_padding,
                               transforms.Normalizer(), spec.num_classes,
                               spec.eval_crop_fraction, spec.eval_interpolation)
  pre = dataclasses.replace(base, normalizer=_normalizer(spec, srcs, base))
  size = spec.image_size
  info = sources_lib.DatasetInfo(num_classes=srcs.num_classes, num_train=len(srcs.train),
                                 num_eval=len(srcs.eval), image_shape=(size, size, srcs.channels),
                                 class_names=srcs.class_names, skipped=srcs.skipped)
  return _Resolved(srcs, info, pre)


def _resolve(spec: DataSpec):
  """The opened dataset of `spec`, shared by specs that differ only in batching, seed or
  workers (those fields are reset in the cache's key)."""
  return _resolve_cached(dataclasses.replace(
      spec, batch_size=1, eval_batch_size=1, seed=0, num_workers=0, prefetch_batches=0,
      mean=tuple(spec.mean), std=tuple(spec.std)))


def dataset_info(spec: DataSpec):
  """DatasetInfo(num_classes, num_train, num_eval, image_shape) after any holdout."""
  return _resolve(spec).info


def dataset_records(spec: DataSpec) -> dict:
  """{file name: JSON value} that a workdir records about its data: `class_names.json` (a
  list, class i's name at i) when the dataset names its classes, `split.json` (the files of
  each split) for a folder dataset; `spec.split_record` reads the latter back on resume."""
  sources = _resolve(spec).sources
  records = {'class_names.json': list(sources.class_names)} if sources.class_names else {}
  if sources.split is not None:
    records['split.json'] = sources.split
  return records


def _read_options(spec):
  import grain
  depth = max(1, int(spec.prefetch_batches))
  return grain.ReadOptions(num_threads=depth, prefetch_buffer_size=depth)


def _to_iterator(map_dataset, spec):
  """grain iterator over a MapDataset, in spec.num_workers processes when > 0."""
  import grain
  ds = map_dataset.to_iter_dataset(_read_options(spec))
  if spec.num_workers > 0:
    _ensure_absl_flags_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=int(spec.num_workers),
        per_worker_buffer_size=max(1, int(spec.prefetch_batches))))
  return iter(ds)


def _ensure_absl_flags_parsed():
  """grain 0.2.x reads an absl flag when starting workers and fails if flags were never parsed
  (google/grain#1355, fixed upstream later): scripts without absl.app need this."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class TrainIterator:
  """Infinite iterator of {'image': float32 (B/P, H, W, C), 'label': int32 (B/P,)}.

  Its state is the number of batches yielded; set_state restarts the grain pipeline there.
  """

  def __init__(self, batches, spec, fingerprint):
    self._batches = batches
    self._spec = spec
    self._fingerprint = fingerprint
    self._step = 0
    self._it = None

  def __iter__(self):
    return self

  def __next__(self):
    if self._it is None:  # started lazily, so set_state before the first batch costs nothing
      self._it = _to_iterator(self._batches[self._step:], self._spec)
    batch = next(self._it)
    self._step += 1
    return batch

  def get_state(self):
    return {'version': STATE_VERSION, 'step': self._step, **self._fingerprint}

  def set_state(self, state):
    for key, value in self._fingerprint.items():
      if state.get(key) != value:
        raise DataError(
            f'the saved data iterator has {key}={state.get(key)!r} but this run has '
            f'{value!r}: resuming would not continue the same data order; restore the '
            f'original value or start a new workdir')
    self.close()
    self._step = int(state['step'])

  def close(self):
    """Stops worker processes, if any (they also stop when the iterator is collected)."""
    if self._it is not None and hasattr(self._it, 'close'):
      self._it.close()
    self._it = None


def train_iterator(spec: DataSpec, process_index=0, process_count=1):
  """Infinite training batches for this process; see the module docstring for the layout."""
  import grain
  r = _resolve(spec)
  _check_process(spec, process_index, process_count)
  local = spec.batch_size // process_count
  ds = grain.MapDataset.source(r.sources.train)
  ds = ds.shuffle(seed=_derived_seed(spec.seed, _SHUFFLE_STREAM)).repeat(None)
  ds = ds.random_map(transforms.TrainMap(r.preprocess),
                     seed=_derived_seed(spec.seed, _AUGMENT_STREAM))
  ds = ds.batch(local)[process_index::process_count]
  fingerprint = {'dataset': spec.dataset, 'seed': int(spec.seed),
                 'batch_size': int(spec.batch_size), 'num_train': r.info.num_train}
  return TrainIterator(ds, spec, fingerprint)


def get_iterator_state(iterator):
  """JSON-serialisable state of a train_iterator (for checkpoints)."""
  if not isinstance(iterator, TrainIterator):
    raise TypeError(f'expected an iterator from data.train_iterator, got {type(iterator)}')
  return iterator.get_state()


def set_iterator_state(iterator, state):
  """Resumes `iterator` at `state` (from get_iterator_state, possibly of another process)."""
  if not isinstance(iterator, TrainIterator):
    raise TypeError(f'expected an iterator from data.train_iterator, got {type(iterator)}')
  iterator.set_state(state)


def eval_batches(spec: DataSpec, process_index=0, process_count=1):
  """One pass over the eval set: {'image', 'label', 'mask'} batches of eval_batch_size / P.

  The last global batch is padded with mask False so every batch has the same shape.
  """
  import grain
  r = _resolve(spec)
  _check_process(spec, process_index, process_count)
  num_eval = len(r.sources.eval)
  global_batch = spec.eval_batch_size
  padded_len = math.ceil(num_eval / global_batch) * global_batch
  ds = grain.MapDataset.source(sources_lib.Padded(r.sources.eval, padded_len))
  ds = ds.map(transforms.EvalMap(r.preprocess))
  ds = ds.batch(global_batch // process_count)[process_index::process_count]
  return _close_when_done(_to_iterator(ds, spec))


def _close_when_done(iterator):
  try:
    yield from iterator
  finally:
    if hasattr(iterator, 'close'):
      iterator.close()


def train_arrays(spec: DataSpec):
  """The whole training split as arrays (images float32, normalised; labels int32) for the
  on-device input path (jax_resnet.training.device_data augments there)."""
  r = _resolve(spec)
  examples = [r.preprocess(r.sources.train[i]) for i in range(len(r.sources.train))]
  images = np.stack([e['image'] for e in examples]).astype(np.float32)
  labels = np.asarray([e['label'] for e in examples], np.int32)
  return images, labels


def _check_process(spec, process_index, process_count):
  """Multi-host arguments against the batch sizes: each process reads an equal share."""
  if not (isinstance(process_count, numbers.Integral) and process_count >= 1
          and isinstance(process_index, numbers.Integral) and 0 <= process_index < process_count):
    raise ValueError(f'process_index={process_index!r} must be in [0, process_count) and '
                     f'process_count={process_count!r} a positive integer.')
  for key in ('batch_size', 'eval_batch_size'):
    if getattr(spec, key) % process_count:
      raise DataError(f'{key}={getattr(spec, key)} is not divisible by the {process_count} '
                        'processes: every process reads an equal share of each global batch; '
                        f'use a multiple of {process_count}')
