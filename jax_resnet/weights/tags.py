"""Weight tags: the published checkpoints we know, with the preprocessing each was evaluated
with. Each is one `WeightTag` record (`jax_resnet.published`: file, digest, licence, top-1,
preprocessing), listed by the registry rows or added with `jax_resnet.register_model`.

    tag = weights.get_tag('resnet50.tv2_in1k')
    tag.resize, tag.crop, tag.interpolation, tag.mean, tag.std   # 232, 224, 'bilinear', ...
    tag.preprocessing()                                          # the same, as one dict

`TAGS` is a live view: a tag added after import is in it. `fetch` says where the file is
(`jax_resnet.load_pretrained` fetches it).
"""

import collections.abc
import difflib
from typing import Optional

from jax_resnet import published
from jax_resnet.weights.trees import WeightsError
from jax_resnet.published import (BIT_LICENCE, BIT_URL, IMAGENET_MEAN, IMAGENET_STD,
                                  INCEPTION_MEAN, INCEPTION_STD, KINETICS_LICENCE,
                                  KINETICS_MEAN, KINETICS_STD, LICENCES, NORMALIZATIONS,
                                  TIMM_LICENCE, TORCHVISION_LICENCE, TORCHVISION_URL, WeightTag)

__all__ = ['BIT_LICENCE', 'BIT_URL', 'IMAGENET_MEAN', 'IMAGENET_STD', 'INCEPTION_MEAN',
           'INCEPTION_STD', 'KINETICS_LICENCE', 'KINETICS_MEAN', 'KINETICS_STD', 'LICENCES',
           'NORMALIZATIONS', 'TAGS', 'TIMM_LICENCE', 'TORCHVISION_LICENCE', 'TORCHVISION_URL',
           'WeightTag', 'default_tag', 'get_tag', 'list_tags']


class _Tags(collections.abc.Mapping):
  """tag name -> WeightTag of every published file, read from the records when asked."""

  def __getitem__(self, name):
    tag = published.lookup(name) if isinstance(name, str) else None
    if tag is None:
      raise KeyError(name)
    return tag

  def __iter__(self):
    return iter([tag.name for tag in published.published_weights()])

  def __len__(self):
    return len(published.published_weights())

  def __repr__(self):
    return f'TAGS({list(self)})'


TAGS = _Tags()


class UnknownTagError(WeightsError, ValueError):
  """A weight tag that is not published here (or a model with no published weights)."""


def get_tag(name: str) -> WeightTag:
  """The tag called `name`; an unknown name is an UnknownTagError suggesting close ones."""
  if name in TAGS:
    return TAGS[name]
  close = difflib.get_close_matches(name, list(TAGS), n=3, cutoff=0.6)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  raise UnknownTagError(f'Unknown weight tag {name!r}.{hint} jax_resnet.weights.list_tags() lists '
                   f'all {len(TAGS)}.')


def default_tag(model: str) -> WeightTag:
  """The tag a bare registry name stands for: its highest published top-1 (ties: the first
  listed, the Hub copy before BiT's .npz; `published.published_weights` order);
  UnknownTagError when the model has no tag."""
  if not any(tag.model == model for tag in TAGS.values()):
    raise UnknownTagError(f'{model} has no published weights here; models with weights: '
                     f'{", ".join(sorted({tag.model for tag in TAGS.values()}))}.')
  return published.published_weights(model)[0]


def list_tags(model: Optional[str] = None):
  """Sorted tag names, those of one registered model if `model` is given."""
  return sorted(name for name, tag in TAGS.items() if model is None or tag.model == model)
