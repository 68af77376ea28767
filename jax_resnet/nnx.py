"""Flax NNX interface to every registered model: the Linen network wrapped as a stateful
`flax.nnx.Module` that holds its variables as `nnx.Param` / `nnx.BatchStat`.

    from flax import nnx
    import jax_resnet.nnx as jrn
    model = jrn.create_model('resnet18', rngs=nnx.Rngs(0))   # initialised, in training mode
    logits = model(x)                  # batch statistics; running statistics updated in place
    model.eval(); logits = model(x)    # running statistics; dropout / drop-path off
    model = jrn.from_linen('resnet50', weights.load('resnet50', path))   # Linen variables in
    model = jrn.load_pretrained('resnet50.tv2_in1k', rngs=nnx.Rngs(0))    # published weights
    variables = jrn.to_linen(model)                                       # and back out

The wrapper is a small bridge written here, not `flax.nnx.bridge.ToNNX`: ToNNX has no
train/eval switch, and its train-mode write-back differs between the supported Flax versions
(under flax 0.11.2 it replaces each submodule's dict with the `batch_stats` update alone, so
the BatchNorm scale and bias are lost after the first training call). Here the statistics are
written into the existing `nnx.BatchStat` variables, which every NNX transform tracks.
"""

import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx as flax_nnx
from flax.core import unfreeze

from jax_resnet import model_facts, registry
from jax_resnet.errors import ModelError
from jax_resnet.weights.trees import WeightsMismatchError, head_classes_of

_COLLECTIONS = {'params': flax_nnx.Param, 'batch_stats': flax_nnx.BatchStat}
_STOCHASTIC_OPTIONS = ('drop_path_rate', 'dropout_rate')


def _is_variable(x):
  return isinstance(x, flax_nnx.Variable)


def _values(tree):
  return jax.tree.map(lambda v: v[...], tree, is_leaf=_is_variable)


class BridgedModel(flax_nnx.Module):
  """A registered (Linen) model as an NNX module: `model(x)` runs it with the variables held
  here. Build one with `create_model` or `from_linen`.

  Like `nnx.BatchNorm` and `nnx.Dropout` it starts in training mode: BatchNorm normalises
  with the batch's statistics and updates the running ones (`model.batch_stats`) in place,
  and dropout / drop-path draw their masks from the `dropout` stream of the `rngs` given at
  construction (the default stream when there is no `dropout` one). `model.eval()` switches
  to the running statistics and turns the masks off; `model.train()` switches back.
  The two switches are separate attributes (`use_running_average`, `deterministic`), set
  together by train()/eval() and one by one with `model.set_attributes(...)` (or `nnx.view`
  where Flax has it): `use_running_average=True, deterministic=False` trains with frozen
  statistics, `use_running_average=False, deterministic=True` updates the statistics without
  dropping anything.

  `model.module` is the Linen module; `model.params` and `model.batch_stats` are its
  variable trees with `nnx.Param` / `nnx.BatchStat` leaves, except the classifier: that is
  `model.head`, a native `nnx.Linear` on the pooled features (None for a backbone), so
  `model.head = nnx.Linear(2048, 5, rngs=...)` swaps it and `nnx.PathContains('head')`
  selects it. `to_linen` gives the Linen variables back, the head under params/head.

  A model built with `freeze_batch_norm=True` reads its running statistics in training mode
  too and writes nothing back, so it can be split and merged inside `jax.grad`.
  """

  def __init__(self, module, variables, *, rngs: Optional[flax_nnx.Rngs] = None,
               head: Optional[flax_nnx.Linear] = None):
    variables = unfreeze(variables)
    extra = sorted(set(variables) - set(_COLLECTIONS))
    if extra or 'params' not in variables:
      raise WeightsMismatchError(
          f'{type(module).__name__} variables must be {{"params", "batch_stats"}}, got '
          f'collections {sorted(variables)}.')
    self.module = module
    params = dict(variables['params'])
    held_head = params.pop('head', None)
    self.params = flax_nnx.data(jax.tree.map(flax_nnx.Param, params))
    self.batch_stats = flax_nnx.data(
        jax.tree.map(flax_nnx.BatchStat, variables.get('batch_stats', {})))
    if head is None and held_head is not None:
      head = _linear_holding(module, held_head)
    self.head = head if head is not None else flax_nnx.data(None)
    self.use_running_average = False
    self.deterministic = False
    if rngs is None:
      self.rngs = flax_nnx.data(None)
    elif isinstance(rngs, flax_nnx.Rngs):
      try:
        self.rngs = rngs['dropout'].fork()  # as nnx.Dropout keeps its stream
      except KeyError:                      # neither a 'dropout' nor a default stream
        self.rngs = flax_nnx.data(None)
    else:
      raise TypeError(f'rngs must be an nnx.Rngs or None, got {type(rngs).__name__}.')

  def set_view(self, deterministic: Optional[bool] = None,
               use_running_average: Optional[bool] = None):
    """What `nnx.view(model, deterministic=..., use_running_average=...)` sets."""
    if deterministic is not None:
      self.deterministic = deterministic
    if use_running_average is not None:
      self.use_running_average = use_running_average

  @property
  def stochastic(self) -> bool:
    """Whether the model drops anything in training (drop_path_rate or dropout_rate > 0)."""
    return any(getattr(self.module, key, 0.0) for key in _STOCHASTIC_OPTIONS)

  def __call__(self, x, *, return_features: bool = False, rngs=None):
    """Logits (or the features dict) for a batch `x`; `rngs` (nnx.Rngs, RngStream or key)
    overrides the stream given at construction for this call's dropout masks. The Linen
    network runs without its head (num_classes=0, the pooled features); `self.head` maps
    them to logits."""
    # A frozen-statistics network (freeze_batch_norm) never writes them back, so the model
    # can be merged and called inside jax.grad without touching variables from outside.
    batch_stats_mode = not (self.use_running_average
                            or getattr(self.module, 'freeze_batch_norm', False))
    dropping = not self.deterministic and self.stochastic
    changes = {'num_classes': 0}
    if batch_stats_mode and not dropping and self.stochastic:
      # Batch statistics without masks: the same network with the drop rates at zero.
      changes.update({k: 0.0 for k in _STOCHASTIC_OPTIONS if hasattr(self.module, k)})
    elif dropping and not batch_stats_mode:
      changes['freeze_batch_norm'] = True
    backbone = self.module.clone(**changes)
    variables = {'params': _values(self.params), 'batch_stats': _values(self.batch_stats)}
    if not (batch_stats_mode or dropping):
      features = backbone.apply(variables, x, train=False, return_features=True)
    else:
      apply_rngs = {'dropout': self._dropout_key(rngs)} if dropping else {}
      features, updates = backbone.apply(variables, x, train=True, return_features=True,
                                         mutable=['batch_stats'], rngs=apply_rngs)
      if batch_stats_mode:
        def write(variable, value):
          variable[...] = value
        jax.tree.map(write, self.batch_stats, updates['batch_stats'], is_leaf=_is_variable)
    if self.head is not None:
      features['logits'] = self.head(features['pre_logits'])
    if return_features:
      return features
    return features['logits'] if self.head is not None else features['pre_logits']

  def _dropout_key(self, rngs):
    rngs = self.rngs if rngs is None else rngs
    if isinstance(rngs, flax_nnx.Rngs):
      return rngs['dropout']()
    if isinstance(rngs, flax_nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise ModelError(
        f'{type(self.module).__name__} drops paths or units in training mode and needs a random '
        'stream: build it with rngs=nnx.Rngs(...), pass model(x, rngs=...), or call '
        'model.eval() (or model.set_attributes(deterministic=True)).')


def _linear_holding(module, head) -> flax_nnx.Linear:
  """An `nnx.Linear` holding a Linen head's {'kernel', 'bias'} (the Dense of the Linen
  network, with its compute dtype)."""
  kernel, bias = jnp.asarray(head['kernel']), jnp.asarray(head['bias'])
  linear = flax_nnx.Linear(kernel.shape[0], kernel.shape[1], dtype=module.dtype,
                           param_dtype=kernel.dtype, rngs=flax_nnx.Rngs(0))
  linear.kernel[...] = kernel
  linear.bias[...] = bias
  return linear


def fresh_head(module, in_features: int, num_classes: int,
               rngs: flax_nnx.Rngs) -> flax_nnx.Linear:
  """A new `nnx.Linear` head for `module`'s pooled features, drawn from `rngs` with Linen
  Dense's initialisers (LeCun normal kernel, zero bias), as `model.head = ...` takes it."""
  return flax_nnx.Linear(in_features, num_classes, dtype=module.dtype,
                         param_dtype=module.param_dtype, rngs=rngs)


def _example_input(name: str, input_shape: Optional[Sequence[int]]):
  if input_shape is None:
    info = model_facts.model_info(name)
    size = info.min_input_size
    input_shape = (size, size, 3)
    if info.input_kind == 'video':
      input_shape = (info.min_num_frames,) + input_shape
  return jnp.zeros((1,) + tuple(input_shape), jnp.float32)


def create_model(name: str, *, rngs: flax_nnx.Rngs, input_shape: Optional[Sequence[int]] = None,
                 **options) -> BridgedModel:
  """The registered model `name` (options as `jax_resnet.create_model`) as an initialised NNX
  module. Parameters are drawn from the `params` stream of `rngs` (else its default stream)
  with Linen's initialisers, so `from_linen` of `module.init({'params': key}, ...)` gives the
  same model. `input_shape` is one example's shape (e.g. (32, 32, 3)); only its channel count
  matters for the parameters, and the default is the model's smallest input with 3 channels
  (`jax_resnet.model_info`), which keeps initialisation cheap."""
  module = registry.create_model(name, **options)
  x = _example_input(name, input_shape)
  init = jax.jit(functools.partial(module.init, train=False))
  variables = init({'params': rngs['params']()}, x)
  return BridgedModel(module, variables, rngs=rngs)


def from_linen(model: Any, variables, *, rngs: Optional[flax_nnx.Rngs] = None,
               input_shape: Optional[Sequence[int]] = None,
               num_classes: Optional[int] = None, **options) -> BridgedModel:
  """An NNX model holding existing Linen `variables` ({'params', 'batch_stats'}: from
  `jax_resnet.weights.load`, a TrainState's params and batch_stats, or `module.init`).

  `model` is a registered name (built with `options`) or a Linen module from
  `jax_resnet.create_model`. The variables are checked against the model's own (names and
  shapes, from an abstract initialisation at `input_shape`) and copied. `num_classes` other
  than the variables' head (or for variables without one) draws a fresh `nnx.Linear` head
  from the `params` stream of `rngs`; 0 keeps no head. `rngs` also gives the dropout /
  drop-path stream; without it the model runs deterministically unless `model(x,
  rngs=...)` gives one."""
  variables = unfreeze(variables)
  variables = {k: v for k, v in variables.items() if k in _COLLECTIONS}
  params, have = variables.get('params', {}), head_classes_of(variables)
  if isinstance(model, str):
    if num_classes is not None:
      options['num_classes'] = num_classes
    elif 'num_classes' not in options:
      options['num_classes'] = have
    name, module = model, registry.create_model(model, **options)
  else:
    if options:
      raise TypeError(f'from_linen: options {sorted(options)} apply to a registered name only; '
                      'pass module.clone(...) instead.')
    name, module = None, model
    if num_classes is not None and num_classes != module.num_classes:
      module = module.clone(num_classes=num_classes)
  reinit = module.num_classes != have
  if reinit:
    variables = {**variables, 'params': {k: v for k, v in params.items() if k != 'head'}}
  if name is not None:
    x = _example_input(name, input_shape)
  else:
    x = jnp.zeros((1,) + tuple(input_shape or _module_input_shape(module)), jnp.float32)
  expected = unfreeze(jax.eval_shape(functools.partial(module.init, train=False),
                                     jax.random.key(0), x))
  head = None
  if reinit:
    shape = expected['params'].pop('head', {}).get('kernel')
    if shape is not None:
      if rngs is None:
        raise ModelError(f'a fresh {module.num_classes}-class head (the variables have '
                         f'{have or "no"} classes) needs rngs=nnx.Rngs(...) to draw it.')
      head = fresh_head(module, shape.shape[0], module.num_classes, rngs)
  _check_match(expected, variables, name or type(module).__name__)
  copy = jax.tree.map(jnp.array, variables)   # the NNX model owns its arrays
  return BridgedModel(module, copy, rngs=rngs, head=head)


def _module_input_shape(module):
  # Shapes of the parameters depend on the channel count only; 32 pixels (and 16 frames) is
  # at least the total downsampling of every registered image (video) net.
  return (32, 32, 3) if module.input_kind == 'image' else (16, 32, 32, 3)


def _check_match(expected, variables, label):
  def flat(tree):
    return {jax.tree_util.keystr(path, simple=True, separator='/'): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  want, got = flat(expected), flat(variables)
  missing = sorted(set(want) - set(got))
  unexpected = sorted(set(got) - set(want))
  wrong = sorted(k for k in set(want) & set(got) if tuple(want[k].shape) != tuple(got[k].shape))
  if missing or unexpected or wrong:
    parts = []
    for title, keys in (('missing', missing), ('unexpected', unexpected)):
      if keys:
        parts.append(f'{len(keys)} {title} ({", ".join(keys[:3])}{", ..." * (len(keys) > 3)})')
    if wrong:
      k = wrong[0]
      parts.append(f'{len(wrong)} of the wrong shape ({k}: {tuple(got[k].shape)}, expected '
                   f'{tuple(want[k].shape)}{", ..." * (len(wrong) > 1)})')
    raise WeightsMismatchError(f'variables do not fit {label}: {"; ".join(parts)}.')


def load_pretrained(source, model: Optional[str] = None, *, rngs: flax_nnx.Rngs,
                    num_classes: Optional[int] = None, **options) -> BridgedModel:
  """`jax_resnet.load_pretrained(source, model, **options)` as an NNX model holding the
  weights: any source the Linen loader takes (a tag, 'hf-hub:...', a weights file, a workdir,
  a Flax checkpoint). A `num_classes` other than the source's draws a fresh `nnx.Linear`
  head from the `params` stream of `rngs` (0: no head)."""
  from jax_resnet.weights.loader import read_pretrained
  found = read_pretrained(source, model)
  module = registry.create_model(found.model, **{**found.options, **options},
                                 num_classes=head_classes_of(found.variables))
  return from_linen(module, found.variables, rngs=rngs, num_classes=num_classes)


def to_linen(model: BridgedModel) -> dict:
  """The model's variables as Linen's {'params', 'batch_stats'} of arrays, for
  `model.module.apply`, a TrainState or `jax_resnet.weights`."""
  params = dict(_values(model.params))
  if model.head is not None:
    params['head'] = {'kernel': model.head.kernel[...], 'bias': model.head.bias[...]}
  return {'params': params, 'batch_stats': _values(model.batch_stats)}


__all__ = ['BridgedModel', 'create_model', 'fresh_head', 'from_linen', 'load_pretrained',
           'to_linen']
