"""What every analysis shares: a model with its variables and data (a `Subject`), the blocks
of a model found at run time, and method interception on those blocks.

Blocks are reached with `flax.linen.intercept_methods`, never by editing the model: an
interceptor sees each block's `__call__` (its input, its bound variables) and may change the
input, replace the output, or gate the residual branch through the block's `drop_path` module,
which every residual branch passes through (the block's merge_residual, jax_resnet.blocks).
"""

import argparse
import ast
import contextlib
import dataclasses
import inspect
import os
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jax_resnet
from jax_resnet.config import from_json, load_config, resolve
from jax_resnet.data.spec import DataSpec
from jax_resnet.blocks import PreActBasicBlock, PreActBottleneckBlock, _Block
from jax_resnet.errors import UserError
from jax_resnet.layers import DropPath


class AnalysisError(UserError, ValueError):
  """Bad input to an analysis command: its arguments, or a subject it cannot study."""


class RunNotFoundError(AnalysisError, FileNotFoundError):
  """A workdir without the run files an analysis reads (config.json, checkpoints)."""


@dataclasses.dataclass
class Subject:
  """A model, its variables ({'params', 'batch_stats'}) and the data it is measured on."""
  label: str
  model: nn.Module
  variables: Any
  data: DataSpec           # the input the model was trained on (eval_arrays reads it)
  step: Optional[int] = None  # None: at initialisation

  @property
  def residual(self) -> bool:
    return bool(getattr(self.model, 'residual', True))

  @property
  def gradient_dtype(self):
    """The dtype of probes whose gradients are measured: the model's compute dtype, at
    least float32 (a float32 probe would round a float64 model's gradients to float32)."""
    return jnp.promote_types(jnp.float32, self.model.dtype)


def data_spec(dataset: str = 'digits'):
  """The trainer's input for `dataset`: the embedded digits recipe (configs/default.py) or the
  paper's CIFAR recipe (configs/cifar10.py), both shipped with the package."""
  recipe = 'default' if dataset == 'digits' else 'cifar10'
  config = load_config(recipe)
  config.dataset = dataset
  return resolve(config).data


def parse_model_spec(spec: str):
  """'name' or 'name:key=value;key=value' (values as Python literals) -> (name, overrides)."""
  name, _, rest = spec.partition(':')
  overrides = {}
  for item in filter(None, rest.split(';')):
    key, _, value = item.partition('=')
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = value.strip()
  return name.strip(), overrides


def split_specs(text: str):
  """Splits 'a,b:stage_sizes=(3,3,3),c' on the commas outside brackets."""
  specs, depth, current = [], 0, ''
  for char in text or '':
    depth += (char in '([') - (char in ')]')
    if char == ',' and depth == 0:
      specs.append(current)
      current = ''
    else:
      current += char
  return [s.strip() for s in specs + [current] if s.strip()]


def in_dtype(model, variables, dtype=None):
  """(model, variables) computing in `dtype`; None leaves both as they are. Parameters and
  statistics are cast, so a float64 subject is the float32 one's network exactly, evaluated
  near round-off. float64 needs jax_enable_x64 (the commands' --float64 turns it on)."""
  if dtype is None:
    return model, variables
  dtype = jnp.dtype(dtype)
  if jax.dtypes.canonicalize_dtype(dtype) != dtype:
    raise AnalysisError(f'{dtype} arrays need jax_enable_x64: call '
                     "jax.config.update('jax_enable_x64', True) first (commands: --float64).")
  cast = lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
  return model.clone(dtype=dtype, param_dtype=dtype), jax.tree.map(cast, variables)


def command_dtype(args):
  """The dtype an analysis command's --float64 switch asks for (None: the model's own)."""
  return 'float64' if args.float64 else None


def init_subject(spec: str, data: Optional[DataSpec] = None, seed: int = 0, dtype=None):
  """A registered model (with overrides, see parse_model_spec) at initialisation; `dtype`
  as in `in_dtype` (the weights are drawn as without it)."""
  data = data or data_spec()
  name, overrides = parse_model_spec(spec)
  overrides.setdefault('num_classes', data.num_classes)
  model = jax_resnet.create_model(name, **overrides)
  x = jnp.zeros((1, data.image_size, data.image_size, 3), jnp.float32)
  variables = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(seed))
  model, variables = unrolled(model, {'params': variables['params'],
                                      'batch_stats': variables.get('batch_stats', {})})
  model, variables = in_dtype(model, variables, dtype)
  return Subject(spec, model, variables, data)


def workdir_subject(workdir: str, dtype=None):
  """The newest readable checkpoint of a trainer workdir (EMA weights if the run kept them);
  `dtype` as in `in_dtype`."""
  from jax_resnet.training import optim, setup
  from jax_resnet.training.changes import mismatch_explainer
  from jax_resnet.training.checkpoints import Checkpoints
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise RunNotFoundError(f'{workdir} has no config.json: pass a workdir written by train.py.')
  with open(path) as f:
    run = resolve(from_json(f.read()))
  check_eval_record(workdir, run.data)
  model = setup.build_model(run)
  tx = optim.make_optimizer(**dataclasses.asdict(run.optimizer))
  shape = (run.data.image_size, run.data.image_size, 3)
  template = setup.host_state(run, model, tx, shape)
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise RunNotFoundError(f'{workdir} has no checkpoints/ directory.')
  restored = Checkpoints(os.path.join(workdir, 'checkpoints'), 1, read_only=True).restore(
      template, mismatch_explainer(run))
  if restored is None:
    raise RunNotFoundError(f'{workdir}/checkpoints holds no readable checkpoint.')
  step, state, _, _ = restored
  params = state.ema_params if state.ema_params is not None else state.params
  model, variables = unrolled(model, {'params': params, 'batch_stats': state.batch_stats})
  model, variables = in_dtype(model, variables, dtype)
  return Subject(f'{run.model}@{step}', model, variables, run.data, step)


def check_eval_record(workdir: str, data: DataSpec):
  """The analyses read the eval split through the pipeline that config.json's DataSpec builds;
  a workdir whose recorded eval transform (data.eval_record) is another one (a dataset changed
  since the run, a damaged record) is refused in one line rather than measured on other
  inputs."""
  from jax_resnet.data import eval_record
  from jax_resnet.errors import DataError
  record = eval_record.read(workdir)
  if record is not None and not eval_record.same(record, eval_record.of_spec(data)):
    raise DataError(f'{workdir}/{eval_record.RECORD_FILE} records another eval transform than '
                    "its config.json's data gives today (changed dataset or per-pixel mean?), "
                    'so the analysis would not see the inputs the run saw; restore the data '
                    'or the record.')


def unrolled(model, variables):
  """The analyses intercept blocks one by one: a model whose stages run under nn.scan is
  turned into its unrolled twin (an exact change of layout, jax_resnet.scan)."""
  if not getattr(model, 'scan_blocks', False):
    return model, variables
  from jax_resnet import scan
  return model.clone(scan_blocks=False), scan.unstack_blocks(variables)


def eval_arrays(data_spec: DataSpec, limit: int = 0):
  """The eval split as (images, labels) numpy arrays, padding removed; `limit` > 0 keeps the
  first `limit` examples."""
  from jax_resnet import data
  images, labels = [], []
  for batch in data.eval_batches(data_spec):
    keep = np.asarray(batch['mask'], bool)
    images.append(np.asarray(batch['image'])[keep])
    labels.append(np.asarray(batch['label'])[keep])
    if limit and sum(len(chunk) for chunk in labels) >= limit:
      break
  images, labels = np.concatenate(images), np.concatenate(labels)
  return (images[:limit], labels[:limit]) if limit else (images, labels)


@dataclasses.dataclass
class BlockInfo:
  """One block of a model, in forward order."""
  name: str
  module: nn.Module      # unbound copy: `module.apply(variables, x, train=...)` runs it alone
  in_shape: tuple
  out_shape: tuple
  residual: bool
  projection: bool       # a learned shortcut (options B/C)
  preact: bool

  @property
  def downsampling(self) -> bool:
    return tuple(self.in_shape) != tuple(self.out_shape)


def is_block(module) -> bool:
  return isinstance(module, _Block)


def _by_name(module, args, kwargs) -> dict:
  """The block call's arguments after `x` as keywords: the model passes `train` by position
  (remat's static argument), and `on_block`'s standalone applies take keywords only."""
  bound = inspect.signature(type(module).__call__).bind(module, *args, **kwargs)
  named = dict(bound.arguments)
  named.pop(next(iter(named)))  # self
  named.pop(next(iter(named)))  # x
  return named


class BlockInterceptor:
  """Calls `on_block(info_index, module, x, kwargs, call)` in place of every block's __call__,
  where `call(x)` runs the block as the model would. Standalone applies made from inside
  `on_block` (see `apply_block`) are not intercepted again."""

  def __init__(self, on_block: Callable, on_branch: Optional[Callable] = None):
    self.on_block, self.on_branch = on_block, on_branch
    self.index, self.passthrough = 0, False

  def __call__(self, next_fun, args, kwargs, context):
    if self.passthrough or context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    module = context.module
    if is_block(module):
      index = self.index
      self.index += 1
      return self.on_block(index, module, args[0], _by_name(module, args, kwargs),
                           lambda x: next_fun(x, *args[1:], **kwargs))
    if self.on_branch is not None and isinstance(module, DropPath):
      return self.on_branch(module, next_fun(*args, **kwargs))
    return next_fun(*args, **kwargs)

  @contextlib.contextmanager
  def standalone(self):
    previous, self.passthrough = self.passthrough, True
    try:
      yield
    finally:
      self.passthrough = previous


@contextlib.contextmanager
def intercept(interceptor):
  interceptor.index = 0
  with nn.intercept_methods(interceptor):
    yield interceptor


def find_blocks(subject: Subject, x):
  """The blocks of `subject.model` in forward order (one eval-mode trace, no compute)."""
  found = []

  def record(index, module, x_in, kwargs, call):
    out = call(x_in)
    params = module.variables.get('params', {})
    found.append(BlockInfo(
        name=module.name, module=module.clone(parent=None), in_shape=x_in.shape,
        out_shape=out.shape, residual=bool(module.residual), projection='proj_conv' in params,
        preact=isinstance(module, (PreActBasicBlock, PreActBottleneckBlock))))
    return out

  with intercept(BlockInterceptor(record)):
    jax.eval_shape(lambda v, x: subject.model.apply(v, x, train=False), subject.variables, x)
  return found


def block_variables(variables, name: str):
  """The variables of block `name` (a direct child of the model) as an apply-able dict."""
  return {col: tree[name] for col, tree in variables.items() if name in tree}


def block_inputs(subject: Subject, x, train: bool = False):
  """(logits, [input of each block]) for batch `x`, captured by interception."""
  inputs = []

  def capture(index, module, x_in, kwargs, call):
    inputs.append(x_in)
    return call(x_in)

  with intercept(BlockInterceptor(capture)):
    if train:
      logits, _ = subject.model.apply(subject.variables, x, train=True, mutable=['batch_stats'])
    else:
      logits = subject.model.apply(subject.variables, x, train=False)
  return logits, inputs


def branch_fn(info: BlockInfo, variables):
  """x -> the block's residual branch h * F(x) (the value it sows), eval mode."""
  block_vars = block_variables(variables, info.name)

  def branch(x):
    _, state = info.module.apply(block_vars, x, train=False, mutable=['intermediates'])
    return state['intermediates']['residual'][0]
  return branch


def block_fn(info: BlockInfo, variables):
  """x -> the block's output, eval mode."""
  block_vars = block_variables(variables, info.name)
  return lambda x: info.module.apply(block_vars, x, train=False)


def fmt(value) -> str:
  """How every report writes a number (tests compare report text through this too)."""
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    value = float(value)
    if value != value:
      return 'nan'
    return f'{value:.4g}'
  return str(value)


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be a positive integer, got {text!r}')
  return value
