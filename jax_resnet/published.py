"""Published weights: one `WeightTag` record per file (torchvision's `Weights` and timm's
pretrained configs record the same facts), in the order the registry rows list them.

    tag = jax_resnet.weights.get_tag('resnet50.tv2_in1k')
    tag.fetch, tag.sha256, tag.licence, tag.top1      # where, its digest, terms, metric
    tag.preprocessing()   # {'resize': 232, 'crop': 224, 'interpolation': 'bilinear', ...}
    tag.eval_transform()  # the same as the trainer's eval pipeline takes it (DataSpec fields)

The record is the one place these facts live: `weights.tags` (TAGS, get_tag, default_tag),
`model_info(name).tags`, predict's and export's preprocessing, a fine-tuning run's eval
transform (`init_tag`) and the Hub repositories' own records (`weights.pretrained.hub_tag`,
the same class) all read it. Tags are timm's names (`<model>.<weights>`); torchvision's
Kinetics-400 video weights are `<model>.tv_kinetics400` and BiT's original .npz files
`<model>.bit_m_in21k_ft_in1k`. `top1` is the top-1 (%) its publisher reports at this
preprocessing (ImageNet-1k validation; Kinetics-400 clip accuracy for video tags), not a
measurement of ours.
"""

import dataclasses
import math
import re
from typing import Optional, Tuple

from jax_resnet.errors import ModelError
from jax_resnet.registry import model_defaults, model_sources

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)  # BiT and timm's ResNetV2: inputs in [-1, 1]
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
NORMALIZATIONS = {'imagenet': (IMAGENET_MEAN, IMAGENET_STD),
                  'inception': (INCEPTION_MEAN, INCEPTION_STD),
                  'kinetics': (KINETICS_MEAN, KINETICS_STD)}

TORCHVISION_LICENCE = ('BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms allow '
                       'non-commercial research use')
TIMM_LICENCE = 'Apache-2.0 (timm); trained on ImageNet-1k, whose terms apply'
BIT_LICENCE = 'Apache-2.0 (Google BiT); trained on ImageNet-21k, fine-tuned on ImageNet-1k'
KINETICS_LICENCE = ('BSD-3-Clause (torchvision); trained on Kinetics-400, whose videos have '
                    "their owners' terms")
LICENCES = {'torchvision': TORCHVISION_LICENCE, 'timm': TIMM_LICENCE, 'bit': BIT_LICENCE,
            'kinetics': KINETICS_LICENCE}
TORCHVISION_URL = 'https://download.pytorch.org/models/'
BIT_URL = 'https://storage.googleapis.com/bit_models/'
HUB_PREFIX = 'hf-hub:'
LOCATIONS = {'torchvision': TORCHVISION_URL, 'big_vision': BIT_URL, 'timm': HUB_PREFIX}
SOURCES = tuple(LOCATIONS)  # who publishes a tag, which also names its converter
SOURCE_KIND = {'torchvision': 'torchvision', 'timm': 'timm', 'big_vision': 'bit'}  # the row's
_SHA_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[^.]+$')  # torchvision/torch.hub's file names


def digest_in_name(url: str) -> Optional[str]:
  """The SHA-256 prefix a torchvision-style file name carries ('resnet50-0676ba61.pth' ->
  '0676ba61'), if any; downloads are checked against it."""
  found = _SHA_IN_NAME.search(url.rsplit('/', 1)[-1])
  return found[1] if found else None


@dataclasses.dataclass(frozen=True)
class WeightTag:
  """One published weights file: where it is, what it is for, under which terms, how well it
  does and how its inputs are prepared (shorter side to `resize`, `interpolation`
  antialiased, centre crop `crop`, [0, 1] pixels minus `mean` over `std`)."""
  name: str                 # '<model>.<weights>', timm's naming
  model: str                # jax_resnet registry name
  source: str               # 'torchvision' | 'timm' | 'big_vision' ('transformers': hub_tag)
  fetch: str                # the file's URL, or 'hf-hub:<repo id>' (its model.safetensors)
  licence: str
  top1: Optional[float]     # published top-1 (%) at this preprocessing, on `dataset`
  crop: int                 # square input fed to the model
  resize: int               # shorter side before the centre crop
  interpolation: str = 'bilinear'  # 'bilinear' | 'bicubic' (PIL filters, antialiased)
  mean: Tuple[float, float, float] = IMAGENET_MEAN
  std: Tuple[float, float, float] = IMAGENET_STD
  num_classes: int = 1000
  size_mb: Optional[float] = None  # the file's size in MB (10**6 bytes), as published
  dataset: str = 'ImageNet-1k'     # where top1 was measured

  @property
  def file(self) -> str:
    """The file's name on its host; a Hub tag's repository id."""
    return self.fetch[len(HUB_PREFIX):] if self.fetch.startswith(HUB_PREFIX) else \
        self.fetch.rsplit('/', 1)[-1]

  @property
  def sha256(self) -> Optional[str]:
    """The SHA-256 prefix the download is checked against (torchvision's names carry one);
    None where the host's own digest applies (the Hub's) or none is published."""
    return digest_in_name(self.fetch)

  @property
  def crop_fraction(self) -> float:
    """The centre crop's share of the resized shorter side."""
    return self.crop / self.resize

  def preprocessing(self) -> dict:
    """How an image is prepared for these weights, as predict's `read_image`/`preprocess`
    and export's baked transform take it: resize, crop, interpolation, mean, std."""
    return dict(resize=self.resize, crop=self.crop, interpolation=self.interpolation,
                mean=tuple(self.mean), std=tuple(self.std))

  def eval_transform(self) -> dict:
    """The same, as the trainer's eval pipeline takes it (`data.spec.DataSpec` fields): the
    statistics, the crop's share of the shorter side, the interpolation."""
    return dict(mean=tuple(self.mean), std=tuple(self.std),
                eval_crop_fraction=self.crop_fraction, eval_interpolation=self.interpolation)


_PUBLISHED = {}  # tag -> WeightTag, in the order the rows list them


def check_weights(tag: WeightTag, model: Optional[str] = None):
  """One line for a record that cannot be added: not a WeightTag, a model without a registry
  row (or other than `model`, the one being registered), an unknown source, a name listed
  already or not '<model name>.<weights>'."""
  if not isinstance(tag, WeightTag):
    raise ModelError(f'published weights are WeightTag records, got {type(tag).__name__}.')
  if model is None:
    model_defaults(tag.model)  # an unknown model: the registry's error, with close matches
  elif tag.model != model:
    raise ModelError(f'weight tag {tag.name!r} is for {tag.model!r}, not {model!r}.')
  if tag.source not in SOURCES:
    raise ModelError(f'weights of {tag.model!r}: the source must be one of {SOURCES}, got '
                     f'{tag.source!r}.')
  if tag.name in _PUBLISHED:
    raise ModelError(f'weight tag {tag.name!r} is listed twice.')
  if tag.name.count('.') != 1 or not all(tag.name.split('.')):
    raise ModelError(f"weight tag {tag.name!r}: a tag is '<model>.<weights>'.")


def add_weights(tag: WeightTag):
  check_weights(tag)
  _PUBLISHED[tag.name] = tag


def published_weights(name: Optional[str] = None) -> Tuple[WeightTag, ...]:
  """The published weights of every row (in the rows' order), or of model `name` with its
  default first: the highest top-1 (ties: the first listed, a Hub copy before BiT's .npz)."""
  if name is None:
    return tuple(_PUBLISHED.values())
  model_defaults(name)  # unknown names: the error with close matches
  found = [tag for tag in _PUBLISHED.values() if tag.model == name]
  if not found:
    return ()
  best = max(found, key=lambda tag: -math.inf if tag.top1 is None else tag.top1)
  return (best,) + tuple(tag for tag in found if tag is not best)


def lookup(name: str) -> Optional[WeightTag]:
  return _PUBLISHED.get(name)


def _row(name, weights, source, file, licence, normalization='imagenet', **facts):
  """A record of one of the rows below: the tag named as timm names it (timm's model name for
  timm's files, ours for torchvision's and BiT's), the host, licence and statistics by name."""
  model = model_sources(name)['timm'] if source == 'timm' else name
  mean, std = NORMALIZATIONS[normalization]
  add_weights(WeightTag(f'{model}.{weights}', name, source, LOCATIONS[source] + file,
                        LICENCES[licence], mean=mean, std=std, **facts))


def _torchvision_weights(name, version, file, top1, size_mb):
  """torchvision's IMAGENET1K_V1 (resize 256) and V2 (resize 232) weights; timm re-hosts them
  as `<model>.tv_in1k` / `<model>.tv2_in1k`. size_mb: torchvision's meta `_file_size`."""
  resize = 256 if version == 1 and name != 'resnext101_64x4d' else 232
  _row(name, 'tv_in1k' if version == 1 else 'tv2_in1k', 'torchvision', file, 'torchvision',
       top1=top1, crop=224, resize=resize, size_mb=size_mb)


def _kinetics_weights(name, file, top1, size_mb):
  """torchvision's KINETICS400_V1 video weights: frames resized to 128x171, centre crop 112."""
  _row(name, 'tv_kinetics400', 'torchvision', file, 'kinetics', normalization='kinetics',
       top1=top1, crop=112, resize=128, size_mb=size_mb, num_classes=400,
       dataset='Kinetics-400')


def _timm_weights(name, weights, top1, size, crop_pct, **facts):
  """timm's eval transform: resize the shorter side to floor(size / crop_pct), crop size."""
  facts = {'interpolation': 'bicubic', 'licence': 'timm', **facts}
  _row(name, weights, 'timm', f'timm/{model_sources(name)["timm"]}.{weights}', top1=top1,
       crop=size, resize=math.floor(size / crop_pct), **facts)


for _args in (
    ('resnet18', 1, 'resnet18-f37072fd.pth', 69.758, 44.661),
    ('resnet34', 1, 'resnet34-b627a593.pth', 73.314, 83.275),
    ('resnet50', 1, 'resnet50-0676ba61.pth', 76.130, 97.781),
    ('resnet50', 2, 'resnet50-11ad3fa6.pth', 80.858, 97.79),
    ('resnet101', 1, 'resnet101-63fe2227.pth', 77.374, 170.511),
    ('resnet101', 2, 'resnet101-cd907fc2.pth', 81.886, 170.53),
    ('resnet152', 1, 'resnet152-394f9c45.pth', 78.312, 230.434),
    ('resnet152', 2, 'resnet152-f82ba261.pth', 82.284, 230.474),
    ('resnext50_32x4d', 1, 'resnext50_32x4d-7cdf4587.pth', 77.618, 95.789),
    ('resnext50_32x4d', 2, 'resnext50_32x4d-1a0047aa.pth', 81.198, 95.833),
    ('resnext101_32x8d', 1, 'resnext101_32x8d-8ba56ff5.pth', 79.312, 339.586),
    ('resnext101_32x8d', 2, 'resnext101_32x8d-110c445d.pth', 82.834, 339.673),
    ('resnext101_64x4d', 1, 'resnext101_64x4d-173b62eb.pth', 83.246, 319.318),
    ('wide_resnet50_2', 1, 'wide_resnet50_2-95faca4d.pth', 78.468, 131.82),
    ('wide_resnet50_2', 2, 'wide_resnet50_2-9ba9bcbe.pth', 81.602, 263.124),
    ('wide_resnet101_2', 1, 'wide_resnet101_2-32ee1156.pth', 78.848, 242.896),
    ('wide_resnet101_2', 2, 'wide_resnet101_2-d733dc28.pth', 82.510, 484.747)):
  _torchvision_weights(*_args)
for _args in (('r3d_18', 'r3d_18-b3b3357e.pth', 63.200, 127.359),
              ('mc3_18', 'mc3_18-a90a0ba3.pth', 63.960, 44.672),
              ('r2plus1d_18', 'r2plus1d_18-91a641e6.pth', 67.463, 120.318)):
  _kinetics_weights(*_args)
# timm's tags at the resolution and crop of its published results (results-imagenet.csv).
for _args in (
    ('resnet18', 'a1_in1k', 73.158, 288, 1.0), ('resnet34', 'a1_in1k', 77.918, 288, 1.0),
    ('resnet50', 'a1_in1k', 81.214, 288, 1.0), ('resnet50', 'a1h_in1k', 80.676, 224, 1.0),
    ('resnet101', 'a1h_in1k', 82.778, 288, 1.0), ('resnet152', 'a1h_in1k', 83.450, 288, 1.0),
    ('resnet26', 'bt_in1k', 76.366, 288, 0.95), ('resnet26d', 'bt_in1k', 77.408, 288, 0.95),
    ('resnet18d', 'ra2_in1k', 73.794, 288, 0.95), ('resnet34d', 'ra2_in1k', 78.436, 288, 0.95),
    ('resnet50d', 'ra2_in1k', 81.356, 288, 0.95), ('resnet50d', 'a1_in1k', 81.450, 288, 1.0),
    ('resnet101d', 'ra2_in1k', 83.016, 320, 1.0), ('resnet152d', 'ra2_in1k', 83.684, 320, 1.0),
    ('resnet200d', 'ra2_in1k', 83.964, 320, 1.0)):
  _timm_weights(*_args)
_timm_weights('preact_resnet50', 'a1h_in1k', 81.398, 288, 1.0, normalization='inception')
_timm_weights('preact_resnet101', 'a1h_in1k', 83.002, 288, 1.0, normalization='inception')
# BiT-M (ImageNet-21k, fine-tuned on ImageNet-1k): timm's copies, then the BiT authors' own
# .npz files with timm's top-1 and preprocessing for the same weights.
_BIT_M = {'bit_resnet50x1': (80.340, 448), 'bit_resnet50x3': (84.020, 448),
          'bit_resnet101x1': (82.342, 448), 'bit_resnet101x3': (84.438, 448),
          'bit_resnet152x2': (84.510, 448), 'bit_resnet152x4': (84.916, 480)}
_BIT = dict(interpolation='bilinear', normalization='inception', licence='bit')
for _name, (_top1, _size) in _BIT_M.items():
  _timm_weights(_name, 'goog_in21k_ft_in1k', _top1, _size, 1.0, **_BIT)
for _name, (_top1, _size) in _BIT_M.items():
  _row(_name, 'bit_m_in21k_ft_in1k', 'big_vision', f'{model_sources(_name)["bit"]}-ILSVRC2012.npz',
       top1=_top1, crop=_size, resize=_size, **_BIT)
