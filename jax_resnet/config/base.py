"""The trainer's config schema: every key, its type through its base value, one line on what it
does. Recipes (the files in the repository's configs/) start from `base_config()` and override
what they need; `--config.<key>=value` overrides on the command line. The config is locked: a
misspelt key is an error.

The base values describe no particular experiment (a recipe names its model and dataset); they
are what a recipe gets for a key it does not set.
"""

import collections.abc
import dataclasses
import functools
import inspect
import re
import typing

import ml_collections
from ml_collections import config_dict

from jax_resnet.data.spec import DataSpec
from jax_resnet.registry import list_models, model_defaults

# The input pipeline's keys take DataSpec's defaults (one set of defaults for both).
_DATA = DataSpec()


# create_model options the trainer sets itself, from its keys of the same names (num_classes,
# dtype, conv1x1, stem_conv) or its own decisions (param_dtype follows dtype, bn_axis_name is
# the data-parallel axis); every other option of the model classes is a model_options key.
TRAINER_SET_OPTIONS = ('num_classes', 'dtype', 'param_dtype', 'bn_axis_name', 'conv1x1_as_dot',
                       'stem_conv')


def model_option_fields() -> dict:
  """{option: (type, comment)} of every field of the registered model classes (image nets
  first) but TRAINER_SET_OPTIONS: the model_options keys, derived so none drifts from the
  model. The comment is the field's own (models.py, video.py); a video field's differing one
  follows in parentheses."""
  return dict(_option_fields())


@functools.lru_cache(maxsize=None)
def _option_fields() -> tuple:
  classes = sorted({model_defaults(name)[0] for name in list_models()},
                   key=lambda cls: (cls.input_kind != 'image', cls.__name__))
  options = {}
  for cls in classes:
    comments = _field_comments(cls)
    for field in dataclasses.fields(cls):
      if field.name in ('parent', 'name') + TRAINER_SET_OPTIONS:
        continue
      comment = comments.get(field.name, '')
      if field.name not in options:
        options[field.name] = (_placeholder_type(field.type), comment)
      elif comment and comment != options[field.name][1]:
        kind, first = options[field.name]
        options[field.name] = (kind, f'{first} ({cls.input_kind}: {comment})')
  return tuple(options.items())


def _placeholder_type(annotation):
  """The ConfigDict type of a field: Sequence[...] -> tuple, Optional[X] -> X."""
  origin = typing.get_origin(annotation)
  if origin is typing.Union:
    return _placeholder_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
  if origin is not None and issubclass(origin, collections.abc.Sequence):
    return tuple
  return annotation


def _field_comments(cls) -> dict:
  """{field: its trailing comment (continued on the lines below)} from the source of `cls` and
  its bases, a subclass's comment over its base's."""
  comments = {}
  for klass in reversed(cls.__mro__):
    if not klass.__module__.startswith('jax_resnet.'):
      continue
    field = None
    for line in inspect.getsource(klass).splitlines():
      declared = re.match(r'  (\w+):[^#]*#\s?(.*)$', line)
      if declared:
        field = declared.group(1)
        comments[field] = declared.group(2).strip()
      elif field and re.match(r'\s+#\s', line):
        comments[field] += ' ' + line.strip().lstrip('#').strip()
      else:
        field = None
  return comments


def _model_options():
  """create_model's architecture options, one per model field (`model_option_fields`). Unset
  (None): the registered value for the model (resnet20's shortcut is 'A', resnet50's 'B');
  set: passed to create_model as given."""
  o = ml_collections.ConfigDict()
  for name, (kind, _) in model_option_fields().items():
    o[name] = config_dict.placeholder(kind)
  return o


def _add_model(c):
  c.model = 'resnet50'                # a name from jax_resnet.list_models()
  c.model_options = _model_options()  # create_model options; see _model_options
  c.num_classes = _DATA.num_classes   # head size; must match the dataset's classes (0: the
  #                                     dataset's count, e.g. a folder's class folders)
  c.dtype = 'float32'                 # compute: 'float32' | 'bfloat16' | 'float16' (params
  #                                     float32) | 'float64' (params too; needs x64)
  c.conv1x1 = 'auto'                  # 1x1 convolutions as 'conv' | 'dot' (matrix products,
  #                                     same weights) | 'auto' (per backend, docs/benchmarks.md)
  c.stem_conv = 'auto'                # ImageNet 7x7/2 stem as 'conv' | 'pad_channels' |
  #                                     'space_to_depth' (same weights) | 'auto' (per backend)
  c.init_from = ''                    # fine-tune from a weights file, a workdir or a weight tag
  c.init_reinit_head = False          # fine-tune: fresh head (num_classes differs from the file)
  c.init_tag = ''                     # init_from's weight tag (weights.list_tags(); default:
                                      # init_from if it is one): its mean/std replace ImageNet's
                                      # under normalize='mean_std'


def _add_data(c):
  c.dataset = _DATA.dataset           # 'digits' (embedded) | 'synthetic' | a TFDS name |
  #                                     'folder:PATH' (one sub-folder of images per class)
  c.skip_unreadable = _DATA.skip_unreadable  # folder: leave out image files PIL cannot read
  #                                     (counted) instead of refusing to start
  c.data_dir = _DATA.data_dir         # TFDS data directory ('' = TFDS default)
  c.image_size = _DATA.image_size     # train/eval resolution fed to the model
  c.train_split = _DATA.train_split   # split trained on
  c.eval_split = _DATA.eval_split     # split evaluated on
  c.holdout_size = _DATA.holdout_size  # >0: hold out this many train examples as the eval
  #                                     set
  c.augment = _DATA.augment           # 'none' | 'pad_crop_flip' (CIFAR) | 'inception' (ImageNet)
  c.crop_padding = _DATA.crop_padding  # pad_crop_flip: zero padding before the random crop
  c.normalize = _DATA.normalize       # 'mean_std' (ImageNet statistics) | 'per_pixel_mean'
  #                                     (He et al. 2015) | 'none'
  c.num_workers = _DATA.num_workers   # grain worker processes for decoding/augmentation
  c.prefetch_batches = _DATA.prefetch_batches  # batches prefetched to the devices
  c.device_data = False               # small datasets: the train set on the devices, batches
  #                                     drawn and augmented inside the jitted step
  c.steps_per_dispatch = 1            # device_data: train steps per host dispatch (lax.scan)


def _add_optimisation(c):
  c.batch_size = _DATA.batch_size     # global batch over all devices and hosts
  c.eval_batch_size = _DATA.eval_batch_size  # global eval batch (the last one is padded and
  #                                     masked)
  c.num_epochs = 90.0                 # training length in epochs, used when num_train_steps < 0
  c.num_train_steps = -1              # training length in steps (overrides num_epochs if >= 0)
  c.optimizer = 'sgd'                 # 'sgd' | 'adamw' | 'lars'
  c.momentum = 0.9                    # SGD/LARS momentum (AdamW b1)
  c.nesterov = False                  # Nesterov momentum for SGD and LARS
  c.learning_rate = 0.1               # peak learning rate (times batch_size/lr_batch_base if set)
  c.lr_batch_base = 0                 # >0: scale learning_rate by batch_size / lr_batch_base
  c.lr_schedule = 'cosine'            # 'constant' | 'step' | 'cosine'
  c.lr_boundaries = (0.5, 0.75)       # 'step': decay points, fractions of training if < 1,
  #                                     else step numbers
  c.lr_decay_factor = 0.1             # 'step': multiply the lr by this at each boundary
  c.warmup_epochs = 0.0               # linear warmup from 0 to the peak lr
  c.warmup_lr = 0.0                   # >0: hold this lr until train error < warmup_until_error
  c.warmup_until_error = 0.8          # (He et al. 2015, ResNet-110 on CIFAR-10)
  c.weight_decay = 1e-4               # weight decay coefficient
  c.weight_decay_mode = 'l2'          # 'l2' (joins the gradient) | 'decoupled' (AdamW)
  c.decay_bn_and_bias = True          # False: no weight decay on BN parameters and biases
  c.label_smoothing = 0.0             # label smoothing of the cross-entropy
  c.trainable = 'all'                 # what trains: 'all' | 'head' | path prefixes 'stage4,head'
  #                                     (jax_resnet.finetune; frozen: no update, no decay, BN
  #                                     statistics kept; freeze_batch_norm defaults to True)
  c.ema_decay = 0.0                   # >0: keep an exponential moving average of the weights
  c.skip_nonfinite_updates = False    # True: skip steps with non-finite loss/gradients/weights
  #                                     (counted); False: stop with an error


def _add_run(c):
  c.parallelism = 'shard_map'         # 'shard_map' (jit over a 1-D device mesh) | 'pmap'
  c.sync_batch_norm = True            # BN statistics over the global batch (cross-replica)
  c.seed = _DATA.seed                 # seeds init, data order, augmentation and dropout
  c.log_every_steps = 100             # train metrics, progress bar and TensorBoard interval
  c.eval_every_steps = 0              # 0: evaluate once per epoch
  c.eval_max_batches = 0              # >0: evaluate only this many batches (benchmarks)
  c.checkpoint_every_steps = 1_000    # checkpoint interval (and always at the end)
  c.keep_checkpoints = 3              # checkpoints kept in the workdir
  c.progress_bar = True               # tqdm bar on process 0
  c.allow_batch_size_change = False   # resume a checkpoint trained with another batch_size
  #                                     (refused otherwise; docs/training.md, elastic resume)


def base_config() -> ml_collections.ConfigDict:
  """Every key the trainer reads, at its base value."""
  c = ml_collections.ConfigDict()
  _add_model(c)
  _add_data(c)
  _add_optimisation(c)
  _add_run(c)
  return c


def key_comments() -> dict:
  """{'key' or 'model_options.key': its one-line comment}, read from this file's source and,
  for model_options, the model fields' (`model_option_fields`): the schema's comments are the
  documentation `train --help-config` prints."""
  import sys
  comments, key = {}, None
  for line in inspect.getsource(sys.modules[__name__]).splitlines():
    assignment = re.match(r'\s*c\.(\w+)\s*=[^#]*#\s?(.*)$', line)
    if assignment:
      key = assignment.group(1)
      comments[key] = assignment.group(2).strip()
    elif key and re.match(r'\s+#\s', line):  # a comment continued on the next line
      comments[key] += ' ' + line.strip().lstrip('#').strip()
    else:
      key = None
  comments.update({f'model_options.{name}': comment
                   for name, (_, comment) in model_option_fields().items()})
  return comments
