"""One reader for every source of weights a user can have (the model, where the source does not
say it, from the one guesser, `recognise.guess_model`).

    read_pretrained('resnet50.tv2_in1k')            # a weight tag (or a registered name)
    read_pretrained('hf-hub:timm/resnet18.a1_in1k') # a Hub repository (timm or transformers)
    read_pretrained('resnet50.safetensors')         # .safetensors, .pth/.pt/.bin, .npz
    read_pretrained('runs/cifar10')                 # a trainer workdir (or one of its steps)
    read_pretrained('example_workdir')              # the Flax ImageNet example's checkpoints
    read_pretrained('ckpts/checkpoint_9')           # our own tree saved with flax/Orbax

returns a `Pretrained` record: the registry name, the variables, the create_model options the
file needs (the example's padding='same', a workdir's model_options), the weight tag (its
preprocessing) and the class names when the source records them. The model is worked out
where the source says it (a tag, a Hub config, an .npz's tag, a workdir's config.json) or
where its names and shapes fit exactly one registered model; otherwise `model=` is asked for.
`jax_resnet.load_pretrained` builds the module from it; the trainer's `init_from`, predict and
export read through it.
"""

import dataclasses
import json
import os
from typing import Mapping, Optional, Tuple

import jax
import jax.numpy as jnp

from jax_resnet import registry
from jax_resnet.weights import files, tags
from jax_resnet.weights.recognise import guess_model
from jax_resnet.weights.trees import (WeightsError, WeightsFileError, WeightsMismatchError,
                                      compare, flatten, head_classes, mismatch_message, unflatten)

HUB_PREFIX = 'hf-hub:'
CLASS_NAMES_FILE = 'class_names.json'  # a trainer workdir's class names (a folder dataset)
WORKDIR_CONFIG = 'config.json'
# A workdir's model_options that shape no parameter the reader returns: scan_blocks runs are
# unrolled on reading; freezing and drop rates are training behaviour.
_TRAINING_ONLY_OPTIONS = ('scan_blocks', 'freeze_batch_norm', 'drop_path_rate', 'dropout_rate')
# Keys an older config.json kept at the top level before they moved into model_options.
_OLD_TOP_LEVEL_OPTIONS = ('shortcut', 'zero_init_residual')


class UnknownSourceError(WeightsError, ValueError):
  """A source that is neither an existing path, a weight tag, a registered name nor an
  'hf-hub:' repository."""


class ModelNotKnownError(WeightsError, ValueError):
  """A source that does not say which model it holds, with no `model=` to say it."""


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What a source holds: `variables` ({'params', 'batch_stats'}, numpy) for
  `create_model(model, **options)`; `tag` (the published record: preprocessing, licence) and
  `class_names` when the source records them; `image_size` a workdir's training resolution."""
  model: str
  variables: Mapping
  source: str
  kind: str
  options: Mapping = dataclasses.field(default_factory=dict)
  tag: Optional[tags.WeightTag] = None
  class_names: Optional[Tuple[str, ...]] = None
  image_size: Optional[int] = None


def is_tag_like(source) -> bool:
  """Whether `source` names published weights rather than a path: a WeightTag, an 'hf-hub:'
  repository, a tag or a registered name that is not an existing path."""
  from jax_resnet.weights import pretrained
  if isinstance(source, tags.WeightTag):
    return True
  source = os.fspath(source)
  if pretrained.is_hub_source(source):  # 'hf-hub:', or a local folder of a Hub repository
    return True
  return source.startswith(HUB_PREFIX) or (not os.path.exists(source) and (
      source in tags.TAGS or source in registry.list_models()))


def model_of_tag(source) -> str:
  """The registry model a tag-like source holds, without reading its weights (a Hub
  repository's config.json is fetched)."""
  from jax_resnet.weights import pretrained
  if not isinstance(source, tags.WeightTag) and pretrained.is_hub_source(source):
    return pretrained._hub_model(pretrained._hub_id(source))[2]
  return pretrained.resolve_tag(source).model


def read_pretrained(source, model: Optional[str] = None) -> Pretrained:
  """The `Pretrained` record of `source` (see the module's text). `model` names the registry
  model when the source does not say it; when the source does, a different `model` is a
  WeightsMismatchError. Other failures: UnknownSourceError, ModelNotKnownError,
  WeightsFileError, WeightsMismatchError (one line each)."""
  if model is not None:
    registry.model_defaults(model)  # an unknown name: the registry's error, close matches
  if is_tag_like(source):
    found = _read_published(source)
  else:
    found = _read_path(os.fspath(source), model)
  if model is not None and found.model != model:
    raise WeightsMismatchError(f'{found.source} holds {found.model} weights, not {model}; '
                               f'pass model={found.model!r} (or leave it out).',
                               holds=found.model)
  return found


def _read_published(source) -> Pretrained:
  from jax_resnet.weights import pretrained
  if not isinstance(source, tags.WeightTag) and pretrained.is_hub_source(source):
    name, variables = pretrained._hub_repository(pretrained._hub_id(source))
    # the create_model options a repository written by save_pretrained records
    return Pretrained(name, variables, os.fspath(source), 'hf-hub',
                      options=pretrained.hub_model_options(source))
  tag = pretrained.resolve_tag(source)
  variables = files.load(tag.model, pretrained.fetch(tag), layout=pretrained.layout_of(tag))
  return Pretrained(tag.model, variables, tag.name, 'tag', tag=tag)


def _read_path(path: str, model: Optional[str]) -> Pretrained:
  looks_like_a_file = os.sep in path or os.path.splitext(path)[1].lower() in files.SUFFIX_KINDS
  if not os.path.exists(path) and not looks_like_a_file:
    close = ''
    if os.sep not in path:
      import difflib
      matches = difflib.get_close_matches(path, list(tags.TAGS), n=3, cutoff=0.6)
      close = f' Did you mean {", ".join(matches)}?' if matches else ''
    raise UnknownSourceError(
        f'{path} is neither a file or directory nor a weight tag.{close} Pass a weights file '
        '(.safetensors, .pth, .npz), a workdir, a checkpoint directory, a tag from '
        'jax_resnet.weights.list_tags() or hf-hub:<owner>/<repo>.')
  kind = files.file_kind(path)
  reader = {'safetensors': _state_dict_file, 'torch': _state_dict_file, 'npz': _npz_file,
            'bit_npz': _bit_npz_file, 'flax_imagenet': _flax_checkpoint,
            'workdir': _directory}[kind]
  return reader(path, model)


def _ask_for_model(path: str, what: str):
  error = ModelNotKnownError(f'{path} does not say which model it holds ({what}); pass '
                             "model='NAME' (a name from jax_resnet.list_models()).")
  error.reason = what
  raise error


def _state_dict_file(path: str, model: Optional[str]) -> Pretrained:
  """A .safetensors or torch file: the model from its names and shapes (the header, the
  memory-mapped tensors), checked before its tensors are read (`files.load`)."""
  name = model or guess_model(files.state_dict_shapes(path))
  if name is None:
    _ask_for_model(path, 'its tensors fit no single registered model')
  return Pretrained(name, files.load(name, path), path, files.file_kind(path))


def _npz_file(path: str, model: Optional[str]) -> Pretrained:
  from jax_resnet.weights.npz import npz_headers, read_tag
  tag_name = read_tag(path)
  tag = tags.get_tag(tag_name) if tag_name else None
  name = tag.model if tag else model or guess_model(npz_headers(path))
  if name is None:
    _ask_for_model(path, 'no weight tag, and its arrays fit no single registered model')
  return Pretrained(name, files.load(name, path), path, 'npz', tag=tag)


def _bit_npz_file(path: str, model: Optional[str]) -> Pretrained:
  from jax_resnet.weights.npz import npz_headers
  name = model or guess_model(npz_headers(path))
  if name is None:
    _ask_for_model(path, 'a BiT checkpoint of no registered width and depth')
  return Pretrained(name, files.load(name, path), path, 'bit_npz')


def _flax_checkpoint(path: str, model: Optional[str]) -> Pretrained:
  """A `flax.training.checkpoints` directory: the Flax ImageNet example's TrainState (its
  names: the model from its block count, padding='same') or a tree of ours."""
  from jax_resnet.weights import flax_imagenet
  tree = flax_imagenet.read_checkpoint(path)
  flat = flatten(tree)
  if flax_imagenet.is_example_tree(flat):
    name = model or guess_model(flat)
    if name is None:
      _ask_for_model(path, "the Flax ImageNet example's names, but no block count it trains")
    variables = flax_imagenet.from_flax_imagenet(name, tree, source=path)
    return Pretrained(name, variables, path, 'flax_imagenet', {'padding': 'same'})
  return _native_tree(path, model, flat, 'checkpoint')


def _directory(path: str, model: Optional[str]) -> Pretrained:
  """A trainer workdir (its config.json names the model and options), one of its checkpoint
  folders, or an Orbax directory holding our own variables."""
  flat = files.read_orbax(path)
  config, root = _workdir_config(path)
  if config is None:
    return _native_tree(path, model, flat, 'checkpoint')
  name = config.get('model')
  options = dict(config.get('model_options') or {})
  options.update({k: config[k] for k in _OLD_TOP_LEVEL_OPTIONS
                  if config.get(k) and options.get(k) is None})
  options = {k: v for k, v in options.items()
             if v is not None and k not in _TRAINING_ONLY_OPTIONS}
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
  variables = check_tree(name, options, flat, path)
  return Pretrained(name, variables, path, 'workdir', options,
                    class_names=_class_names(root, variables),
                    image_size=config.get('image_size'))


def _workdir_config(path: str):
  """(config.json, workdir) of the trainer workdir at or above `path` (a workdir, its
  checkpoints/ or one step: up to three levels), else (None, None)."""
  here = os.path.abspath(path)
  for _ in range(4):
    candidate = os.path.join(here, WORKDIR_CONFIG)
    if os.path.isfile(candidate):
      try:
        with open(candidate, encoding='utf-8') as f:
          config = json.load(f)
      except (OSError, ValueError) as error:
        raise WeightsFileError(f'cannot read {candidate}: {error}') from None
      if isinstance(config, dict) and config.get('model'):
        return config, here
    here = os.path.dirname(here)
  return None, None


def _class_names(workdir: str, variables) -> Optional[Tuple[str, ...]]:
  """The workdir's class names (class_names.json, a JSON list of strings), when there is one
  for each class of the head."""
  path = os.path.join(workdir, CLASS_NAMES_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      names = json.load(f)
  except (OSError, ValueError) as error:
    raise WeightsFileError(f'cannot read {path}: {error}') from None
  classes = files.head_classes_of(variables)
  if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
          and len(names) == classes):
    raise WeightsFileError(f'{path} is not a list of {classes} class names (one per class of '
                           'the head); fix or remove it.')
  return tuple(names)


def _native_tree(path: str, model: Optional[str], flat: Mapping, kind: str) -> Pretrained:
  name = model or guess_model(flat)
  if name is None:
    _ask_for_model(path, 'a variables tree that fits no single registered model')
  return Pretrained(name, check_tree(name, {}, flat, path), path, kind)


def check_tree(name: str, options: Mapping, flat: Mapping, source: str) -> dict:
  """Our flat variables checked against `create_model(name, **options)` (names and shapes;
  the head's classes taken from the tree), unflattened."""
  num_classes = head_classes(flat)
  expected = flatten(_shapes(name, num_classes, tuple(sorted(options.items()))))
  missing, unexpected, wrong = compare(expected, flat)
  if missing or unexpected or wrong:
    raise WeightsMismatchError(mismatch_message(
        f'{source} does not match {name} ({len(expected)} arrays)', missing, unexpected, wrong,
        'Check the model name: the checkpoint was written for another model.'))
  values = unflatten(dict(flat))
  files.check_values(values, source)
  return values


def _shapes(name: str, num_classes: int, options: tuple) -> dict:
  from jax_resnet.weights.torch_layout import variable_shapes
  if not options:
    return variable_shapes(name, num_classes)
  module = registry.create_model(name, num_classes=num_classes, **dict(options))
  video = module.input_kind == 'video'
  x = jax.ShapeDtypeStruct((1, 2, 16, 16, 3) if video else (1, 32, 32, 3), jnp.float32)
  return jax.eval_shape(lambda k: module.init(k, x, train=False), jax.random.key(0))
