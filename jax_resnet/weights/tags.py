"""Weight tags: the published checkpoints we know, with the preprocessing each was evaluated
with (torchvision's `Weights` and timm's pretrained configs record the same facts).

    tag = weights.get_tag('resnet50.tv2_in1k')
    tag.resize, tag.crop, tag.interpolation, tag.mean, tag.std   # 232, 224, 'bilinear', ...

Tags are timm's names (`<model>.<weights>`), with our registry name in `model`; torchvision's
Kinetics-400 video weights are `<model>.tv_kinetics400` and BiT's original .npz files
`<model>.bit_m_in21k_ft_in1k`. `top1` is the top-1 (%) its publisher reports at this
preprocessing (ImageNet-1k validation; Kinetics-400 clip accuracy for video tags), not a
measurement of ours. `fetch` says where the file is (`jax_resnet.load_pretrained` fetches it).
"""

import dataclasses
import difflib
import math
from typing import Optional, Tuple

from jax_resnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jax_resnet.registry import model_for_source

INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # BiT and timm's ResNetV2: inputs in [-1, 1]

TORCHVISION_LICENCE = ('BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms allow '
                       'non-commercial research use')
TIMM_LICENCE = 'Apache-2.0 (timm); trained on ImageNet-1k, whose terms apply'
BIT_LICENCE = 'Apache-2.0 (Google BiT); trained on ImageNet-21k, fine-tuned on ImageNet-1k'


@dataclasses.dataclass(frozen=True)
class WeightTag:
  name: str                 # '<model>.<weights>', timm's naming
  model: str                # jax_resnet registry name
  source: str               # 'torchvision' | 'timm' | 'big_vision'
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


def _torchvision(model, version, file_name, top1, size_mb):
  """torchvision's IMAGENET1K_V1 (resize 256) and V2 (resize 232) weights; timm re-hosts them
  as `<model>.tv_in1k` / `<model>.tv2_in1k`. size_mb: torchvision's meta `_file_size`."""
  model = model_for_source('torchvision', model)
  suffix = 'tv_in1k' if version == 1 else 'tv2_in1k'
  resize = 256 if version == 1 and model != 'resnext101_64x4d' else 232
  return WeightTag(f'{model}.{suffix}', model, 'torchvision', TORCHVISION_URL + file_name,
                   TORCHVISION_LICENCE, top1, crop=224, resize=resize, interpolation='bilinear',
                   size_mb=size_mb)


def _kinetics(model, file_name, top1, size_mb):
  """torchvision's KINETICS400_V1 video weights: frames resized to 128x171, centre crop 112."""
  model = model_for_source('torchvision', model)
  return WeightTag(f'{model}.tv_kinetics400', model, 'torchvision', TORCHVISION_URL + file_name,
                   KINETICS_LICENCE, top1, crop=112, resize=128, interpolation='bilinear',
                   mean=KINETICS_MEAN, std=KINETICS_STD, num_classes=400, size_mb=size_mb,
                   dataset='Kinetics-400')


def _bit_npz(file_name, top1, size):
  """BiT-M (ImageNet-21k, fine-tuned on ImageNet-1k) as the BiT authors publish it, an .npz;
  top-1 and preprocessing are timm's for the same weights (its goog_in21k_ft_in1k copies)."""
  model = model_for_source('bit', file_name.split('-ILSVRC2012')[0])
  return WeightTag(f'{model}.bit_m_in21k_ft_in1k', model, 'big_vision', BIT_URL + file_name,
                   BIT_LICENCE, top1, crop=size, resize=size, interpolation='bilinear',
                   mean=INCEPTION_MEAN, std=INCEPTION_STD)


def _timm(name, top1, size, crop_pct, interpolation='bicubic', mean=IMAGENET_MEAN,
          std=IMAGENET_STD, licence=TIMM_LICENCE):
  """timm's eval transform: resize the shorter side to floor(size / crop_pct), crop size. The
  model is the registry row whose timm name the tag starts with."""
  model = model_for_source('timm', name.split('.')[0])
  return WeightTag(name, model, 'timm', f'hf-hub:timm/{name}', licence, top1, crop=size,
                   resize=math.floor(size / crop_pct), interpolation=interpolation, mean=mean,
                   std=std)


_TAGS = [
    _torchvision('resnet18', 1, 'resnet18-f37072fd.pth', 69.758, 44.661),
    _torchvision('resnet34', 1, 'resnet34-b627a593.pth', 73.314, 83.275),
    _torchvision('resnet50', 1, 'resnet50-0676ba61.pth', 76.130, 97.781),
    _torchvision('resnet50', 2, 'resnet50-11ad3fa6.pth', 80.858, 97.79),
    _torchvision('resnet101', 1, 'resnet101-63fe2227.pth', 77.374, 170.511),
    _torchvision('resnet101', 2, 'resnet101-cd907fc2.pth', 81.886, 170.53),
    _torchvision('resnet152', 1, 'resnet152-394f9c45.pth', 78.312, 230.434),
    _torchvision('resnet152', 2, 'resnet152-f82ba261.pth', 82.284, 230.474),
    _torchvision('resnext50_32x4d', 1, 'resnext50_32x4d-7cdf4587.pth', 77.618, 95.789),
    _torchvision('resnext50_32x4d', 2, 'resnext50_32x4d-1a0047aa.pth', 81.198, 95.833),
    _torchvision('resnext101_32x8d', 1, 'resnext101_32x8d-8ba56ff5.pth', 79.312, 339.586),
    _torchvision('resnext101_32x8d', 2, 'resnext101_32x8d-110c445d.pth', 82.834, 339.673),
    _torchvision('resnext101_64x4d', 1, 'resnext101_64x4d-173b62eb.pth', 83.246, 319.318),
    _torchvision('wide_resnet50_2', 1, 'wide_resnet50_2-95faca4d.pth', 78.468, 131.82),
    _torchvision('wide_resnet50_2', 2, 'wide_resnet50_2-9ba9bcbe.pth', 81.602, 263.124),
    _torchvision('wide_resnet101_2', 1, 'wide_resnet101_2-32ee1156.pth', 78.848, 242.896),
    _torchvision('wide_resnet101_2', 2, 'wide_resnet101_2-d733dc28.pth', 82.510, 484.747),
    _kinetics('r3d_18', 'r3d_18-b3b3357e.pth', 63.200, 127.359),
    _kinetics('mc3_18', 'mc3_18-a90a0ba3.pth', 63.960, 44.672),
    _kinetics('r2plus1d_18', 'r2plus1d_18-91a641e6.pth', 67.463, 120.318),
]
# timm's tags at the resolution and crop of its published results (results-imagenet.csv).
_I = dict(mean=INCEPTION_MEAN, std=INCEPTION_STD)
_BIT = dict(interpolation='bilinear', licence=BIT_LICENCE, **_I)
_TAGS += [
    _timm('resnet18.a1_in1k', 73.158, 288, 1.0),
    _timm('resnet34.a1_in1k', 77.918, 288, 1.0),
    _timm('resnet50.a1_in1k', 81.214, 288, 1.0),
    _timm('resnet50.a1h_in1k', 80.676, 224, 1.0),
    _timm('resnet101.a1h_in1k', 82.778, 288, 1.0),
    _timm('resnet152.a1h_in1k', 83.450, 288, 1.0),
    _timm('resnet26.bt_in1k', 76.366, 288, 0.95),
    _timm('resnet26d.bt_in1k', 77.408, 288, 0.95),
    _timm('resnet18d.ra2_in1k', 73.794, 288, 0.95),
    _timm('resnet34d.ra2_in1k', 78.436, 288, 0.95),
    _timm('resnet50d.ra2_in1k', 81.356, 288, 0.95),
    _timm('resnet50d.a1_in1k', 81.450, 288, 1.0),
    _timm('resnet101d.ra2_in1k', 83.016, 320, 1.0),
    _timm('resnet152d.ra2_in1k', 83.684, 320, 1.0),
    _timm('resnet200d.ra2_in1k', 83.964, 320, 1.0),
    _timm('resnetv2_50.a1h_in1k', 81.398, 288, 1.0, **_I),
    _timm('resnetv2_101.a1h_in1k', 83.002, 288, 1.0, **_I),
    _timm('resnetv2_50x1_bit.goog_in21k_ft_in1k', 80.340, 448, 1.0, **_BIT),
    _timm('resnetv2_50x3_bit.goog_in21k_ft_in1k', 84.020, 448, 1.0, **_BIT),
    _timm('resnetv2_101x1_bit.goog_in21k_ft_in1k', 82.342, 448, 1.0, **_BIT),
    _timm('resnetv2_101x3_bit.goog_in21k_ft_in1k', 84.438, 448, 1.0, **_BIT),
    _timm('resnetv2_152x2_bit.goog_in21k_ft_in1k', 84.510, 448, 1.0, **_BIT),
    _timm('resnetv2_152x4_bit.goog_in21k_ft_in1k', 84.916, 480, 1.0, **_BIT),
]
_TAGS += [
    _bit_npz('BiT-M-R50x1-ILSVRC2012.npz', 80.340, 448),
    _bit_npz('BiT-M-R50x3-ILSVRC2012.npz', 84.020, 448),
    _bit_npz('BiT-M-R101x1-ILSVRC2012.npz', 82.342, 448),
    _bit_npz('BiT-M-R101x3-ILSVRC2012.npz', 84.438, 448),
    _bit_npz('BiT-M-R152x2-ILSVRC2012.npz', 84.510, 448),
    _bit_npz('BiT-M-R152x4-ILSVRC2012.npz', 84.916, 480),
]
TAGS = {tag.name: tag for tag in _TAGS}


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
  listed, the Hub copy before BiT's .npz); ValueError when the model has no tag."""
  found = [tag for tag in _TAGS if tag.model == model]
  if not found:
    raise ValueError(f'{model} has no published weights here; models with weights: '
                     f'{", ".join(sorted({tag.model for tag in _TAGS}))}.')
  return max(found, key=lambda tag: tag.top1)


def list_tags(model: Optional[str] = None):
  """Sorted tag names, those of one registered model if `model` is given."""
  return sorted(name for name, tag in TAGS.items() if model is None or tag.model == model)
