"""Variable trees as flat '/'-joined names, mismatch reports, and `merge_pretrained`."""

from typing import Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jax_resnet.errors import UserError
from jax_resnet.registry import model_defaults

COLLECTIONS = ('params', 'batch_stats')
SEP = '/'  # our flat names ('params/head/kernel'), as in .npz files and error messages
_LIST_LIMIT = 5


class WeightsError(UserError):
  """Weights that cannot be used; the message says what, why and what to do."""


class WeightsMismatchError(WeightsError, ValueError):
  """Tensors that do not fit the model: missing, unexpected or of the wrong shape. `holds` is
  the registered model the tensors were recognised as, when one was (else None)."""

  def __init__(self, message: str, holds=None):
    super().__init__(message)
    self.holds = holds


class HeadMismatchError(WeightsMismatchError):
  """The checkpoint's classifier has a different number of classes than requested."""


class WeightsFileError(WeightsError, OSError):
  """A weights file that is absent, unreadable, corrupt, unsafe or of an unknown format."""


def flatten(variables: Mapping, collections=COLLECTIONS) -> dict:
  """{'params': {'a': {'b': x}}} -> {'params/a/b': x}, for the given top-level collections only
  (an Orbax TrainState also holds step and opt_state; model.init may add other collections)."""
  return traverse_util.flatten_dict({c: variables[c] for c in collections if c in variables},
                                    sep=SEP)


def unflatten(flat: Mapping) -> dict:
  """Inverse of `flatten`: {'params/a/b': x} -> {'params': {'a': {'b': x}}} (plain dicts)."""
  return traverse_util.unflatten_dict(dict(flat), sep=SEP)


def shape_text(value) -> str:
  shape = getattr(value, 'shape', None)
  if shape is None:
    return f'({type(value).__name__})'
  return str(tuple(int(d) for d in shape))


def _listing(items) -> str:
  shown = ', '.join(items[:_LIST_LIMIT])
  extra = len(items) - _LIST_LIMIT
  return f'{shown}, ... and {extra} more' if extra > 0 else shown


def mismatch_message(subject: str, missing, unexpected, wrong, hint: str) -> str:
  """One line: '<subject> does not match <model>: missing 2: a (3,), b (4,); ...'.

  `missing`/`unexpected` are [(name, shape_text)], `wrong` is [(name, got, expected)].
  """
  parts = []
  if missing:
    parts.append(f'missing {len(missing)}: ' + _listing([f'{n} {s}' for n, s in missing]))
  if unexpected:
    parts.append(f'unexpected {len(unexpected)}: ' +
                 _listing([f'{n} {s}' for n, s in unexpected]))
  if wrong:
    parts.append(f'wrong shape {len(wrong)}: ' +
                 _listing([f'{n} {g} (model expects {e})' for n, g, e in wrong]))
  return f'{subject}: {"; ".join(parts)}. {hint}'


def compare(expected: Mapping, given: Mapping):
  """(missing, unexpected, wrong) between two flat {name: array-like} dicts, in the order of
  `expected` (then `given` for unexpected names)."""
  missing = [(n, shape_text(v)) for n, v in expected.items() if n not in given]
  unexpected = [(n, shape_text(v)) for n, v in given.items() if n not in expected]
  wrong = [(n, shape_text(given[n]), shape_text(v)) for n, v in expected.items()
           if n in given and shape_text(given[n]) != shape_text(v)]
  return missing, unexpected, wrong


def _is_head(name: str) -> bool:
  return name.startswith('params/head/')


class Shape(NamedTuple):
  """An array's shape alone, where `compare` needs something with `.shape`."""
  shape: tuple


# Each layout's head weight: (its name, the axis that counts the classes, the ranks it may
# have). Ours and the Flax example's are Dense kernels (C, N); torchvision's, timm's and
# transformers' Linear weights (N, C), timm's ResNetV2 head a 1x1 convolution (N, C, 1, 1);
# BiT's release files a 1x1 convolution (1, 1, C, N).
HEAD_WEIGHTS = (('params/head/kernel', -1, (2,)), ('params/Dense_0/kernel', -1, (2,)),
                ('fc.weight', 0, (2, 4)), ('head.fc.weight', 0, (2, 4)),
                ('classifier.1.weight', 0, (2,)), ('resnet/head/conv2d/kernel', -1, (4,)))


def head_classes(arrays: Mapping) -> int:
  """The classes of the head of `arrays` (flat name -> array or shape, any layout of
  HEAD_WEIGHTS, a 'module.' prefix dropped by the caller); 0 when it has none (a backbone).
  The one reader of a head's size: converters, readers and guessers all ask it."""
  for name, axis, ranks in HEAD_WEIGHTS:
    shape = tuple(getattr(arrays.get(name), 'shape', None) or ())
    if len(shape) in ranks:
      return int(shape[axis])
  return 0


def head_classes_of(variables: Mapping) -> int:
  """`head_classes` of a nested variables tree ({'params': {'head': ...}}); 0 for a backbone
  without one."""
  return head_classes(flatten(variables))


def merge_pretrained(init_variables: Mapping, pretrained: Mapping, reinit_head: bool = False):
  """Fills a freshly initialised variables tree with pretrained values.

  Args:
    init_variables: `model.init(...)` output ({'params', 'batch_stats'}, dict or FrozenDict) of
      the model you will train; it fixes the structure, shapes and dtypes of the result.
    pretrained: variables from `jax_resnet.weights.load` (or `from_torchvision`), with or
      without a 'head'.
    reinit_head: keep the freshly initialised classifier ('params/head/*') and ignore the
      pretrained one, whatever its shape (fine-tuning to a different `num_classes`).

  Returns:
    A plain-dict tree with the structure of `init_variables`: every leaf taken from
    `pretrained` (cast to the fresh leaf's dtype), except the head when `reinit_head`.
    Collections other than params/batch_stats are kept from `init_variables`.

  Raises:
    WeightsMismatchError: one message listing every name that is missing from `pretrained`,
      unexpected in it, or of the wrong shape (a head mismatch without `reinit_head` included,
      with a hint to set it).
  """
  fresh, given = flatten(init_variables), flatten(pretrained)
  if reinit_head:
    given = {n: v for n, v in given.items() if not _is_head(n)}
    expected = {n: v for n, v in fresh.items() if not _is_head(n)}
  else:
    expected = fresh
  missing, unexpected, wrong = compare(expected, given)
  if missing or unexpected or wrong:
    names = [m[0] for m in missing] + [u[0] for u in unexpected] + [w[0] for w in wrong]
    hint = ('The pretrained weights were made for another model or options.')
    if not reinit_head and any(_is_head(n) for n in names):
      hint += (' The classifier head differs: pass reinit_head=True to train a new head '
               '(fine-tuning to another num_classes).')
    raise WeightsMismatchError(mismatch_message(
        'pretrained variables do not match the model', missing, unexpected, wrong, hint))
  merged = {n: jnp.asarray(given[n], dtype=jnp.result_type(v)) if n in given else v
            for n, v in fresh.items()}
  out = unflatten(merged)
  for collection, value in init_variables.items():
    if collection not in COLLECTIONS:
      out[collection] = value
  return out


def to_float32(value) -> np.ndarray:
  """torch tensor or array-like -> numpy; floating types become float32."""
  if hasattr(value, 'detach'):  # a torch tensor; torch itself is not imported here
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    value = np.array(value.numpy())  # a copy: the tensor may map its file (torch.load(mmap))
  array = np.asarray(value)
  if np.issubdtype(array.dtype, np.floating) or array.dtype.name == 'bfloat16':
    array = array.astype(np.float32)
  return array


def supported_model(model_name: str, supported, refusal: str) -> str:
  """`model_name` if a format has it (`supported`); else the registry's error for an unknown
  name (with close matches), or WeightsError(refusal) for a model the format lacks."""
  if model_name in supported:
    return model_name
  model_defaults(model_name)
  raise WeightsError(refusal)


def first_line(error: Exception) -> str:
  """'TypeName: the first line of its message' (at most 300 characters), for one-line errors."""
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:300] if text else ""}'
