"""Weight tags: the published checkpoints we know, with the preprocessing each was evaluated
with (torchvision's `Weights` and timm's pretrained configs record the same facts).

    tag = weights.get_tag('resnet50.tv2_in1k')
    tag.resize, tag.crop, tag.interpolation, tag.mean, tag.std   # 232, 224, 'bilinear', ...

Tags are timm's names (`<model>.<weights>`), with our registry name in `model`; torchvision's
Kinetics-400 video weights are `<model>.tv_kinetics400` and BiT's original .npz files
`<model>.bit_m_in21k_ft_in1k`. The facts of each are the registry rows' (`registry.
PretrainedCfg`: file, size, licence, top-1, preprocessing by name); this module names their
hosts, licences and mean/std. `top1` is the top-1 (%) its publisher reports at this
preprocessing (ImageNet-1k validation; Kinetics-400 clip accuracy for video tags), not a
measurement of ours. `fetch` says where the file is (`jax_resnet.load_pretrained` fetches it).
"""

import dataclasses
import difflib
from typing import Optional, Tuple

from jax_resnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jax_resnet.registry import PretrainedCfg, pretrained_cfgs

INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # BiT and timm's ResNetV2: inputs in [-1, 1]

TORCHVISION_LICENCE = ('BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms allow '
                       'non-commercial research use')
TIMM_LICENCE = 'Apache-2.0 (timm); trained on ImageNet-1k, whose terms apply'
BIT_LICENCE = 'Apache-2.0 (Google BiT); trained on ImageNet-21k, fine-tuned on ImageNet-1k'


@dataclasses.dataclass(frozen=True)
class WeightTag:
  name: str                 # '<model>.<weights>', timm's naming
  model: str                # jax_resnet registry name
  source: str               # 'torchvision' | 'timm' | 'big_vision' ('transformers': hub_tag)
  fetch: str                # the file's URL, or 'hf-hub:<repo id>' (its model.safetensors)
  licence: str
  top1: Optional[float]     # published ImageNet-1k top-1 (%) at this preprocessing
  crop: int                 # square input fed to the model
  resize: int               # shorter side before the centre crop
  interpolation: str        # 'bilinear' | 'bicubic' (PIL filters, antialiased)
  mean: Tuple[float, float, float] = IMAGENET_MEAN
  std: Tuple[float, float, float] = IMAGENET_STD
  num_classes: int = 1000
  size_mb: Optional[float] = None  # the file's size in MB (10**6 bytes), as published
  dataset: str = 'ImageNet-1k'     # where top1 was measured


TORCHVISION_URL = 'https://download.pytorch.org/models/'
BIT_URL = 'https://storage.googleapis.com/bit_models/'
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
KINETICS_LICENCE = ('BSD-3-Clause (torchvision); trained on Kinetics-400, whose videos have '
                    "their owners' terms")
# What the registry's pretrained configs name: licences, normalizations, hosts.
LICENCES = {'torchvision': TORCHVISION_LICENCE, 'timm': TIMM_LICENCE, 'bit': BIT_LICENCE,
            'kinetics': KINETICS_LICENCE}
NORMALIZATIONS = {'imagenet': (IMAGENET_MEAN, IMAGENET_STD),
                  'inception': (INCEPTION_MEAN, INCEPTION_STD),
                  'kinetics': (KINETICS_MEAN, KINETICS_STD)}
_LOCATIONS = {'torchvision': TORCHVISION_URL, 'big_vision': BIT_URL, 'timm': 'hf-hub:'}


def tag_of(cfg: PretrainedCfg) -> WeightTag:
  """The WeightTag of a registry row's pretrained config."""
  mean, std = NORMALIZATIONS[cfg.normalization]
  return WeightTag(cfg.tag, cfg.model, cfg.source, _LOCATIONS[cfg.source] + cfg.file,
                   LICENCES[cfg.licence], cfg.top1, crop=cfg.crop, resize=cfg.resize,
                   interpolation=cfg.interpolation, mean=mean, std=std,
                   num_classes=cfg.num_classes, size_mb=cfg.size_mb, dataset=cfg.dataset)


TAGS = {cfg.tag: tag_of(cfg) for cfg in pretrained_cfgs()}


def get_tag(name: str) -> WeightTag:
  """The tag called `name`; an unknown name is a ValueError suggesting close ones."""
  if name in TAGS:
    return TAGS[name]
  close = difflib.get_close_matches(name, list(TAGS), n=3, cutoff=0.6)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  raise ValueError(f'Unknown weight tag {name!r}.{hint} jax_resnet.weights.list_tags() lists '
                   f'all {len(TAGS)}.')


def default_tag(model: str) -> WeightTag:
  """The tag a bare registry name stands for: its highest published top-1 (ties: the first
  listed, the Hub copy before BiT's .npz; the registry's `pretrained_cfgs` order); ValueError
  when the model has no tag."""
  if not any(tag.model == model for tag in TAGS.values()):
    raise ValueError(f'{model} has no published weights here; models with weights: '
                     f'{", ".join(sorted({tag.model for tag in TAGS.values()}))}.')
  return TAGS[pretrained_cfgs(model)[0].tag]


def list_tags(model: Optional[str] = None):
  """Sorted tag names, those of one registered model if `model` is given."""
  return sorted(name for name, tag in TAGS.items() if model is None or tag.model == model)
