"""Choosing what trains when fine-tuning: one rule, for Linen (optax labels) and NNX (a filter).

    trainable = 'head'                      # or 'all', or ['stage4', 'head'], or 'stage4,head'
    tx = jr.finetune.optimizer(optax.sgd(0.01, momentum=0.9), trainable)   # Linen / TrainState
    labels = jr.finetune.labels(params, trainable)   # {'...': 'trainable' | 'frozen'}
    nnx.Optimizer(model, tx, wrt=jr.finetune.nnx_filter(trainable))        # NNX

A parameter trains when its path ('stage4_block1/conv1/kernel', 'head/bias': module names
joined by '/', as in `params`) starts with one of the prefixes; 'all' trains everything,
'head' the classifier only. Frozen parameters get no update and no weight decay (optax's
`multi_transform` sends them to `set_to_zero`, so no optimizer state is kept for them either).
BatchNorm statistics follow the same rule (`keep_frozen`): the trainer restores those of
frozen modules after each step.
"""

from typing import Sequence, Tuple, Union

import jax
import optax

from jax_resnet.errors import UserError

ALL, HEAD = 'all', 'head'
TRAINABLE, FROZEN = 'trainable', 'frozen'
# NNX paths start with the attribute holding the Linen tree; the head is its own module.
_NNX_COLLECTIONS = ('params', 'batch_stats')

Trainable = Union[str, Sequence[str]]


class TrainableError(UserError, ValueError):
  """A `trainable` value that names no parameters."""


def prefixes(trainable: Trainable) -> Tuple[str, ...]:
  """The path prefixes `trainable` stands for; () for 'all'. A string other than 'all' is a
  comma-separated list ('head' is one prefix)."""
  if isinstance(trainable, str):
    if trainable.strip() == ALL:
      return ()
    items = [part.strip() for part in trainable.split(',')]
  else:
    items = [str(part).strip() for part in trainable]
  if not items or any(not item or item == ALL for item in items):
    raise TrainableError(f"trainable must be 'all', 'head' or parameter-path prefixes such as "
                         f"'stage4,head', got {trainable!r}.")
  return tuple(items)


def path_of(path) -> str:
  """A jax key path (dict keys, NNX attributes) as 'module/.../leaf'."""
  keys = [str(getattr(k, 'key', getattr(k, 'name', k))) for k in path]
  return '/'.join(keys)


def trains(path: str, trainable: Trainable) -> bool:
  """Whether the parameter (or statistic) at `path` trains under `trainable`."""
  chosen = prefixes(trainable)
  return not chosen or any(path.startswith(prefix) for prefix in chosen)


def labels(params, trainable: Trainable):
  """`params`' tree with 'trainable' or 'frozen' at each leaf (optax.multi_transform's
  labels). A prefix that matches no parameter is a TrainableError naming the top-level
  modules."""
  check(params, trainable)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: TRAINABLE if trains(path_of(path), trainable) else FROZEN, params)


def check(params, trainable: Trainable):
  """TrainableError unless each prefix of `trainable` matches a parameter of `params`."""
  paths = [path_of(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for prefix in prefixes(trainable):
    if not any(path.startswith(prefix) for path in paths):
      modules = list(dict.fromkeys(path.split('/')[0] for path in paths))
      raise TrainableError(f'trainable prefix {prefix!r} matches no parameter; the model\'s '
                           f'modules are {", ".join(modules)}.')


def optimizer(tx: optax.GradientTransformation,
              trainable: Trainable) -> optax.GradientTransformation:
  """`tx` for the trainable parameters, nothing (no update, no decay, no state) for the
  frozen ones; `tx` itself for 'all'."""
  if not prefixes(trainable):
    return tx
  return optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()},
                               lambda params: labels(params, trainable))


def keep_frozen(old, new, trainable: Trainable):
  """`new` (a BatchNorm statistics tree after a step) with the frozen modules' entries taken
  from `old`: frozen parts keep their statistics bit for bit."""
  if not prefixes(trainable):
    return new
  return jax.tree_util.tree_map_with_path(
      lambda path, before, after: after if trains(path_of(path), trainable) else before,
      old, new)


def nnx_filter(trainable: Trainable):
  """An NNX filter selecting the trainable `nnx.Param`s of a `jax_resnet.nnx` model by the
  same rule (for `nnx.Optimizer(model, tx, wrt=...)`, `nnx.DiffState`, `nnx.split`)."""
  from flax import nnx

  def selected(path, value):
    keys = [str(k) for k in path]
    if keys and keys[0] in _NNX_COLLECTIONS:
      keys = keys[1:]
    return trains('/'.join(keys), trainable)
  return nnx.All(nnx.Param, selected)
