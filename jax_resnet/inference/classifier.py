"""Weights for inference and the transform their record gives, then batched classification.

    classifier = load_classifier(weights='runs/finetune')          # or tag='resnet50.tv2_in1k'
    for results in classifier.classify_files(image_paths(['photos/']), batch_size=32, top=5):
      for path, predictions in results:                             # [(class, probability)]
        print(path, [(classifier.class_name(i), p) for i, p in predictions])

The weights come through the one loader (`weights.loader.read_pretrained`); the model is the
one named, else the weight tag's (given, or the one an .npz records), else what the loader
works out. The transform is the tag's (resize, crop, interpolation, mean, std), a workdir's
recorded eval transform (`config.eval_preprocessing`), else the model's own input size with
ImageNet's statistics (torchvision V1's resize to 256 for a 224 crop). The refusals name the
options `jax-resnet predict` and `export` share (--model, --weights, --tag, --resize).
"""

import dataclasses
import functools
import json
import os
from typing import Callable, Iterator, Mapping, Optional, Sequence

import jax
import numpy as np

from jax_resnet import model_facts, registry
from jax_resnet.errors import ModelError
from jax_resnet.inference.images import (CROP, RESIZE, InferenceError, check_image,
                                         read_image, read_image_as_trained)
from jax_resnet.weights import loader
from jax_resnet.weights.npz import read_tag
from jax_resnet.weights.trees import head_classes_of


def check_model(name: str):
  """An unknown model name as one InferenceError line (the registry's, with close matches)."""
  if name not in registry.list_models():
    try:
      registry.model_defaults(name)
    except ModelError as error:
      raise InferenceError(str(error)) from None


def read_weights(weights=None, tag: Optional[str] = None,
                 model: Optional[str] = None) -> loader.Pretrained:
  """The `weights.loader.Pretrained` of `weights` (a file or workdir) or, without it, of `tag`
  (the published file), through the one loader. The model is `model`, else the weight tag's
  (`tag`, or the one an .npz records), else what the loader works out from the source."""
  if model is not None:
    check_model(model)
  hint = model
  named = tag or (read_tag(weights) if weights else None)
  if hint is None and named and weights is not None:
    hint = loader.model_of_tag(named)
  try:
    return loader.read_pretrained(weights if weights is not None else tag, hint)
  except loader.ModelNotKnownError as error:
    raise InferenceError(f'{weights} does not say which model it holds ({error.reason}); '
                         'pass --model NAME (a name from jax_resnet.list_models()).') from None


def is_workdir(path) -> bool:
  """Whether `path` is a trainer workdir (a folder with config.json or the eval record);
  OSError when it is a folder that cannot be read."""
  from jax_resnet.data import eval_record
  if not path or not os.path.isdir(path):
    return False
  os.listdir(path)  # a folder that cannot be read fails here, with its errno and name
  return any(os.path.isfile(os.path.join(path, name))
             for name in ('config.json', eval_record.RECORD_FILE))


def tag_transform(model: str, weights=None, tag: Optional[str] = None,
                  input_size: int = CROP, resize: Optional[int] = None) -> dict:
  """read_image's arguments: from `tag` (an hf-hub: repository's preprocessor_config.json or
  timm pretrained_cfg), else the tag the file records, else the workdir's image_size or the
  model's input_size (torchvision V1's resize to 256 and crop for 224); `resize` overrides
  the tag's."""
  from jax_resnet.weights.pretrained import HUB_PREFIX, hub_tag, resolve_tag
  name = tag or read_tag(weights)
  from jax_resnet.config import trained_image_size  # config.json's keys are config/'s to read
  crop = trained_image_size(weights) or input_size
  transform = dict(resize=RESIZE if crop == CROP else crop, crop=crop)
  # An hf-hub: repository's preprocessing is the one its files record (`hub_tag`).
  found = (hub_tag if name.startswith(HUB_PREFIX) else resolve_tag)(name) if name else None
  if found:
    if found.model != model:
      raise InferenceError(f'weight tag {name} is for {found.model}, not {model}; pass '
                           f'--model {found.model} or another --tag.')
    transform = found.preprocessing()
  if resize is not None:
    transform['resize'] = resize
  return transform


def class_names_of(workdir, num_classes: int) -> list:
  """The workdir's class_names.json (a JSON list of strings, one per class) when present."""
  path = os.path.join(workdir, 'class_names.json') if workdir else None
  if not path or not os.path.isfile(path):
    return []
  try:
    with open(path) as f:
      names = json.load(f)
  except (OSError, ValueError) as error:
    raise InferenceError(f'cannot read {path}: {getattr(error, "strerror", None) or error}.') \
        from None
  if (not isinstance(names, list) or len(names) != num_classes
      or not all(isinstance(name, str) for name in names)):
    raise InferenceError(f'{path} is not a list of {num_classes} class names (strings), one '
                         'per class of the head; restore it from the run.')
  return names


def class_names_for(found: loader.Pretrained, workdir, num_classes: int) -> list:
  """The class names: a workdir's, else those the source records, else ImageNet's for a
  1000-class head, else none."""
  from jax_resnet.weights import imagenet_classes
  return (class_names_of(workdir, num_classes) or list(found.class_names or ())
          or (imagenet_classes() if num_classes == 1000 else []))


def top_k(probabilities: np.ndarray, k: int):
  """[(class index, probability)] in decreasing probability (ties: lower index first)."""
  order = np.argsort(-probabilities, kind='stable')[:k]
  return [(int(i), float(probabilities[i])) for i in order]


def classify(model_name: str, variables, images: np.ndarray, **options) -> np.ndarray:
  """Softmax probabilities (N, classes) for preprocessed (N, H, W, 3) images, H = W = the
  model's `jax_resnet.model_info(model_name).input_size` (224 for ImageNet). Runs op by op
  (no jit): for a handful of images that is faster than compiling the whole network.
  options: create_model's, those the weights need (`Pretrained.options`)."""
  num_classes = head_classes_of(variables)
  model = registry.create_model(model_name, num_classes=num_classes, **options)
  logits = model.apply(variables, images, train=False)
  return np.asarray(jax.nn.softmax(logits, axis=-1))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What classifying needs before the weights are read: the model, the transform
  (`prepare`: image path -> model input), the workdir, the record already read if any."""
  model: str
  prepare: Callable[[str], np.ndarray]
  workdir: Optional[str]
  found: Optional[loader.Pretrained] = None


def plan(weights=None, tag: Optional[str] = None, model: Optional[str] = None,
         resize: Optional[int] = None, exif_transpose: bool = False) -> Plan:
  """The model and transform of `weights` (a file or workdir) or `tag`; the weights are read
  here only when the model must be worked out from them."""
  if weights is None and not tag:
    raise InferenceError('pass --weights FILE, or --tag TAG to use a published file.')
  workdir = weights if is_workdir(weights) else None
  found = None  # the one loader (tag, file or workdir), after the arguments' own checks
  if model is None:
    found = read_weights(weights, tag)
    model = found.model
  check_model(model)
  info = model_facts.model_info(model)
  if info.input_kind == 'video':
    raise InferenceError(f'{model} classifies video clips; this tool classifies images.')
  if workdir:
    from jax_resnet.config import eval_preprocessing
    if tag or resize is not None:
      raise InferenceError(f'{weights} is a training workdir: its images are fed as its run '
                           'evaluated them (eval_preprocessing.json); leave out --tag and '
                           '--resize.')
    prepare = functools.partial(read_image_as_trained, record=eval_preprocessing(weights),
                                exif_transpose=exif_transpose)
  else:
    transform = tag_transform(model, weights, tag, info.input_size, resize)
    if transform['resize'] < transform['crop']:
      raise InferenceError(f'--resize must be >= the crop ({transform["crop"]}).')
    prepare = functools.partial(read_image, exif_transpose=exif_transpose, **transform)
  return Plan(model, prepare, workdir, found)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A model with its weights, its transform and its class names (empty when unknown)."""
  model: str
  variables: Mapping
  prepare: Callable[[str], np.ndarray]
  class_names: Sequence[str]
  options: Mapping = dataclasses.field(default_factory=dict)

  def class_name(self, index: int) -> str:
    names = self.class_names
    return names[index] if index < len(names) else f'class {index}'

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    """`classify` of preprocessed (N, H, W, 3) images."""
    return classify(self.model, self.variables, images, **self.options)

  def classify_files(self, paths: Sequence[str], batch_size: int = 32,
                     top: int = 5) -> Iterator[list]:
    """[(path, top_k)] per batch of `batch_size` paths, yielded as each batch ends (the last
    batch padded, so that every batch has one shape)."""
    for start in range(0, len(paths), batch_size):
      batch = paths[start:start + batch_size]
      images = np.stack([self.prepare(path) for path in batch])
      padding = batch_size - len(batch)
      if padding:
        images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], images.dtype)])
      rows = self.probabilities(images)[:len(batch)]
      yield [(path, top_k(row, top)) for path, row in zip(batch, rows)]


def classifier_of(planned: Plan, weights=None, tag: Optional[str] = None) -> Classifier:
  """The Classifier of a `plan` (its weights read now unless the plan read them)."""
  found = planned.found or read_weights(weights, tag, planned.model)
  variables = found.variables
  if 'head' not in variables['params']:
    raise InferenceError(f'{weights or tag} has no classifier head; it cannot predict '
                         'classes.')
  num_classes = head_classes_of(variables)
  class_names = class_names_for(found, planned.workdir, num_classes)
  return Classifier(planned.model, variables, planned.prepare, class_names, found.options)


def load_classifier(weights=None, tag: Optional[str] = None, model: Optional[str] = None,
                    resize: Optional[int] = None, exif_transpose: bool = False) -> Classifier:
  """The Classifier of `weights` (a file or trainer workdir) or `tag` (a published file)."""
  return classifier_of(plan(weights, tag, model, resize, exif_transpose), weights, tag)


def check_images(paths: Sequence[str]):
  """Every image's header, before any batch runs (an ImageError naming the first bad one)."""
  for path in paths:
    check_image(path)
