"""Input pipelines: embedded digits, TFDS (CIFAR, ImageNet, ...) and synthetic data via grain.

    from jax_resnet import data
    info = data.dataset_info(config)                      # DatasetInfo after any holdout
    it = data.train_iterator(config, process_index, process_count)   # infinite, resumable
    state = data.get_iterator_state(it)                   # JSON-serialisable
    data.set_iterator_state(it, state)
    for batch in data.eval_batches(config, process_index, process_count): ...
    images, labels = data.train_arrays(config)            # the whole train split, for device_data

Prepare a TFDS dataset once with `python -m jax_resnet.data prepare cifar10 [--data_dir DIR]`.
Importing this package is cheap: grain, TFDS and scikit-learn load on first use.
"""

from jax_resnet.data.pipeline import (TrainIterator, dataset_info, eval_batches,
                                      get_iterator_state, set_iterator_state, train_arrays,
                                      train_iterator)
from jax_resnet.data.sources import DatasetInfo

__all__ = [
    'DatasetInfo', 'TrainIterator', 'dataset_info', 'eval_batches', 'get_iterator_state',
    'set_iterator_state', 'train_arrays', 'train_iterator',
]
