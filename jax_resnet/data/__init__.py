"""Input pipelines: embedded digits, TFDS (CIFAR, ImageNet, ...), a folder of images
(`folder:PATH`, data/folder.py) and synthetic data via grain.

    from jax_resnet import data
    spec = data.DataSpec(dataset='digits', image_size=16, num_classes=10, eval_split='test')
    data.check(spec)                                      # every rule that needs no data
    info = data.dataset_info(spec)                        # DatasetInfo after any holdout
    it = data.train_iterator(spec, process_index, process_count)   # infinite, resumable
    state = data.get_iterator_state(it)                   # JSON-serialisable
    data.set_iterator_state(it, state)
    for batch in data.eval_batches(spec, process_index, process_count): ...
    images, labels = data.train_arrays(spec)              # the whole train split, for device_data
    data.dataset_records(spec)   # {'class_names.json': [...], 'split.json': {...}} for a workdir

Prepare a TFDS dataset once with `python -m jax_resnet.data prepare cifar10 [--data_dir DIR]`.
Importing this package is cheap: grain, TFDS and scikit-learn load on first use.
"""

from jax_resnet.data.pipeline import (TrainIterator, dataset_info, dataset_records, eval_batches,
                                      get_iterator_state, set_iterator_state, train_arrays,
                                      train_iterator)
from jax_resnet.data.sources import DatasetInfo
from jax_resnet.data.spec import DataSpec, check, check_against_dataset

__all__ = [
    'DataSpec', 'DatasetInfo', 'TrainIterator', 'check', 'check_against_dataset',
    'dataset_info', 'dataset_records', 'eval_batches', 'get_iterator_state',
    'set_iterator_state', 'train_arrays', 'train_iterator',
]
